// The web console in headless Chromium (Debian's, driven by playwright-core): two users of one
// conversation, a guest through a share link, and an admin. Reads its setup as JSON from argv[2];
// prints one JSON line per step ({step, ms}) and exits non-zero on the first failure.
import { chromium } from "playwright-core";

const setup = JSON.parse(process.argv[2]);
const { base, a, b, adminToken, screenshots, graceMs, idleMs } = setup;
const started = Date.now();
const report = (step, extra = {}) =>
  console.log(JSON.stringify({ step, ms: Date.now() - started, ...extra }));

const member = (id, status) =>
  `.member[data-user-id="${id}"]` + (status ? `[data-status="${status}"]` : "");

async function signIn(browser, who) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => report("page error", { who: who.email, error: String(error) }));
  await page.goto(base + "/");
  await page.getByLabel("Email").fill(who.email);
  await page.getByLabel("Password").fill(who.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForSelector("#me:not([hidden])");
  await page.waitForSelector("#connection:text('live')");
  return { context, page };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/lib/chromium/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  // The admin watches from the start: its feed hears every change below.
  const admin = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  await admin.addInitScript((token) => {
    localStorage.setItem("presence.session", JSON.stringify({ token, kind: "user" }));
  }, adminToken);
  const adminPage = await admin.newPage();
  await adminPage.goto(base + "/");
  await adminPage.waitForSelector("#cluster:not([hidden])");
  await adminPage.waitForSelector("#connection:text('live')");

  const B = await signIn(browser, b);
  await B.page.waitForSelector(member(a.id, "offline"));
  report("B sees A offline");

  const A = await signIn(browser, a);
  await B.page.waitForSelector(member(a.id, "online"), { timeout: 10000 });
  report("B sees A online");
  await B.page.screenshot({ path: `${screenshots}/console-user.png`, fullPage: true });

  // The large conversation (600 members): its count, as its room hears it.
  const large = `section[data-conversation-id="everyone"]`;
  await B.page.waitForSelector(`${large} .count:text-matches("^2 of 600 online")`, {
    timeout: 10000,
  });
  report("B sees the large conversation's count");

  // A does nothing for the idle time: away by itself; a click brings A back.
  await B.page.waitForSelector(member(a.id, "away") + `[data-auto-away="true"]`, {
    timeout: idleMs + 10000,
  });
  const idle = await B.page.textContent(member(a.id) + " .status-text");
  if (idle !== "away (idle)") throw new Error(`A idle shows ${idle}`);
  report("B sees A away (idle)");
  await A.page.mouse.click(5, 300);
  await B.page.waitForSelector(member(a.id, "online") + `[data-auto-away="false"]`, {
    timeout: 10000,
  });
  report("B sees A back");

  await A.page.getByLabel("Status text").fill("In a meeting");
  await A.page.getByLabel("Clear after").selectOption("3600");
  await A.page.getByLabel("My status").selectOption("dnd");
  await B.page.waitForSelector(member(a.id, "dnd") + ` .custom-text:text("In a meeting")`, {
    timeout: 10000,
  });
  const until = await B.page.getAttribute(member(a.id) + " .custom-text", "title");
  if (!/^until /.test(until || "")) throw new Error(`no end shown: ${until}`);
  report("B sees A dnd");

  // B hides its own last seen: it then sees A's only roughly (reciprocity).
  await Promise.all([
    B.page.waitForResponse((r) => r.url().endsWith("/api/users/me/privacy") && r.ok()),
    B.page.getByLabel("Last seen").selectOption("hidden"),
  ]);

  await B.page.getByRole("button", { name: "Share link" }).first().click();
  const share = await B.page.waitForSelector(".share");
  const url = (await share.textContent()).replace("Guests join with ", "").trim();
  const G = await browser.newContext();
  const guestPage = await G.newPage();
  await guestPage.goto(url.replace(/^https?:\/\/[^/]+/, base));
  await guestPage.getByLabel("Your name").fill("Visitor");
  await guestPage.getByRole("button", { name: "Join" }).click();
  await guestPage.waitForSelector("#connection:text('live')");
  await B.page.waitForSelector(`.member:has(.guest-tag):has-text("Visitor")[data-status="online"]`, {
    timeout: 10000,
  });
  report("B sees the guest online");
  await B.page.screenshot({ path: `${screenshots}/console-live.png` });
  await guestPage.screenshot({ path: `${screenshots}/console-guest.png`, fullPage: true });

  const closedAt = Date.now();
  await A.context.close();
  await B.page.waitForSelector(member(a.id, "offline"), { timeout: graceMs + 10000 });
  const offlineAfter = Date.now() - closedAt;
  report("B sees A offline after A's page closed", { offlineAfterMs: offlineAfter });
  const text = await B.page.textContent(member(a.id) + " .status-text");
  if (text !== "offline, last seen recently") throw new Error(`A's last seen for B: ${text}`);
  report("A shows last seen", { text });
  await B.page.screenshot({ path: `${screenshots}/console-offline.png`, fullPage: true });

  const workers = await adminPage.textContent("#cluster-stats div:has(dt:text('Workers')) dd");
  await adminPage.waitForSelector("#chart polyline");
  const feed = await adminPage.locator("#feed li").count();
  report("admin sees the cluster", { workers: Number(workers), feed });
  await adminPage.waitForTimeout(2500); // a second sample on the chart
  await adminPage.screenshot({ path: `${screenshots}/console-admin.png`, fullPage: true });
  report("done");
} catch (error) {
  report("failed", { error: String(error) });
  process.exitCode = 1;
} finally {
  await browser.close();
}
