// The client against a real presence cluster (started by tests/e2e/test_js_client.py, which
// passes its addresses and two users' tokens): the store follows the server through joins,
// status changes, a dropped connection and a close.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { connect } from "../src/index.js";

const need = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/e2e/test_js_client.py`);
  return value;
};
const [urlA, urlB] = need("PRESENCE_TEST_URLS").split(",");
const tokenA = need("PRESENCE_TEST_TOKEN_A");
const tokenB = need("PRESENCE_TEST_TOKEN_B");
const idB = need("PRESENCE_TEST_ID_B");
const conversation = need("PRESENCE_TEST_CONVERSATION");

function until(check, what, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const timer = setInterval(() => {
      if (check()) {
        clearInterval(timer);
        resolve();
      } else if (Date.now() - started > timeoutMs) {
        clearInterval(timer);
        reject(new Error(`${what}: not within ${timeoutMs} ms`));
      }
    }, 20);
  });
}

const clients = [];
after(() => clients.forEach((c) => c.close()));

test("the store follows another user across workers, through a reconnection", async () => {
  const a = connect({ url: urlA, token: tokenA, trackInput: false, reconnectionDelayMs: 100 });
  clients.push(a);
  await until(() => a.user !== null && a.store.get(idB), "a's snapshot");
  assert.equal(a.store.get(idB).isOnline, false);
  a.join(conversation);
  await until(() => a.store.members(conversation).length === 2, "a's conversation state");

  const b = connect({ url: urlB, token: tokenB, trackInput: false });
  clients.push(b);
  await until(() => a.store.get(idB)?.isOnline, "a hearing b come online on the other worker");
  b.setStatus("dnd");
  await until(() => a.store.get(idB)?.status === "dnd", "a hearing b's status");
  assert.equal(a.store.members(conversation).find((r) => r.userId === idB).status, "dnd");

  // The connection drops: socket.io-client reconnects with its back-off, the server sends a
  // fresh snapshot, and the client joins its conversation again.
  const snapshots = [];
  a.store.subscribe((_, change) => change.type === "snapshot" && snapshots.push(change));
  const states = [];
  a.store.subscribe((_, change) => change.type === "state" && states.push(change));
  a.socket.io.engine.close();
  await until(() => snapshots.length >= 1 && states.length >= 1, "a's reconnection");
  assert.equal(a.store.get(idB).status, "dnd");

  b.close();
  await until(() => a.store.get(idB)?.isOnline === false, "a hearing b go offline");
});

test("activity is sent at most once per period", async () => {
  const c = connect({ url: urlA, token: tokenA, trackInput: false, activityEveryMs: 60_000 });
  clients.push(c);
  await until(() => c.socket.connected, "c connected");
  const sent = [];
  c.socket.onAnyOutgoing((event) => sent.push(event));
  assert.equal(c.activity(), true);
  assert.equal(c.activity(), false);
  assert.deepEqual(sent, ["activity"]);
  assert.throws(() => connect({ url: urlA }), TypeError);
});

// The cluster runs with PRESENCE_IDLE_AWAY_S=1.5: an idle client goes away by itself.
test("an idle user goes away, its activity brings it back, and a status ends by itself", async () => {
  const a = connect({ url: urlA, token: tokenA, trackInput: false });
  const b = connect({ url: urlB, token: tokenB, trackInput: false, activityEveryMs: 0 });
  clients.push(a, b);
  await until(() => b.socket.connected && a.store.get(idB)?.isOnline, "a seeing b online");
  b.setStatus("online"); // the first test left it dnd, which automatic away never changes
  const seen = () => a.store.get(idB);
  await until(() => seen().status === "away" && seen().autoAway, "b going away", 8_000);
  assert.equal(b.activity(), true);
  await until(() => seen().status === "online" && !seen().autoAway, "b back");

  const ends = new Date(Date.now() + 1_500);
  b.setStatus("dnd", { text: "focus", until: ends });
  await until(() => seen().statusText === "focus" && seen().status === "dnd", "b's custom status");
  assert.equal(seen().statusUntil, ends.toISOString());
  await until(() => seen().statusText === null && seen().status !== "dnd", "its end", 5_000);
  assert.ok(Date.now() <= ends.getTime() + 2_000, "ended within 2 s of its moment");
});
