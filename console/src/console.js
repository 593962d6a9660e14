// The presence console: sign in (or join through a share link), watch every member of your
// conversations change presence live, set your own status; admins also see the cluster.
// Live presence comes from the project's JavaScript client (clients/js).
import { connect as connectPresence } from "../../clients/js/src/index.js";

const SESSION_KEY = "presence.session";
const FEED_LIMIT = 50;
const CHART_WINDOW_MS = 5 * 60 * 1000;
const POLL_MS = 2000;

const $ = (selector) => document.querySelector(selector);
const state = {
  session: null, // {token, kind: "user" | "guest"}
  me: null,
  conversations: [], // [{id, title, members: [record]}]
  socket: null,
  samples: [], // [{at, throttleRate, cacheSize}]
  pollTimer: null,
};

// -- HTTP -------------------------------------------------------------------------------------

function credentials() {
  if (!state.session) return {};
  return state.session.kind === "guest"
    ? { "X-Session-Token": state.session.token }
    : { Authorization: `Bearer ${state.session.token}` };
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", ...credentials() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json().catch(() => ({}));
  if (!response.ok || payload.success === false) {
    const error = new Error(payload.error?.message || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return payload;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

// -- rendering --------------------------------------------------------------------------------

function ago(iso) {
  if (!iso) return "never seen";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return "last seen just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `last seen ${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `last seen ${hours} h ago`;
  return `last seen ${Math.round(hours / 24)} days ago`;
}

// Members of a large conversation shown at first (online first).
const LARGE_PAGE = 20;
const STATUS_TEXT = { online: "online", away: "away", dnd: "do not disturb", offline: "offline" };
const APPROX_TEXT = {
  recently: "last seen recently",
  within_week: "last seen within a week",
  within_month: "last seen within a month",
  long_ago: "last seen a long time ago",
};

function statusLine(record) {
  if (record.status === "offline") {
    if (record.lastSeen) return `offline, ${ago(record.lastSeen)}`;
    // Its owner shares it approximately (or this user hides its own), or not at all.
    return record.lastSeenApprox ? `offline, ${APPROX_TEXT[record.lastSeenApprox]}` : "offline";
  }
  const status = STATUS_TEXT[record.status] || record.status;
  return record.autoAway ? `${status} (idle)` : status;
}

function memberItem(record) {
  const item = document.createElement("li");
  item.className = "member";
  item.dataset.userId = record.userId;
  item.dataset.status = record.status;
  const dot = document.createElement("span");
  dot.className = "dot";
  dot.setAttribute("aria-hidden", "true");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = record.username;
  const text = document.createElement("span");
  text.className = "status-text";
  text.textContent = statusLine(record);
  item.dataset.autoAway = String(Boolean(record.autoAway));
  item.append(dot, name);
  if (record.isAnonymous) {
    const tag = document.createElement("span");
    tag.className = "guest-tag";
    tag.textContent = "guest";
    item.append(tag);
  }
  item.append(text);
  if (record.statusText) {
    const custom = document.createElement("span");
    custom.className = "custom-text";
    custom.textContent = record.statusText;
    if (record.statusUntil) custom.title = `until ${new Date(record.statusUntil).toLocaleString()}`;
    item.append(custom);
  }
  return item;
}

function renderConversations() {
  const root = $("#conversations");
  root.replaceChildren();
  if (state.conversations.length === 0) {
    const empty = document.createElement("p");
    empty.textContent = "No conversations yet.";
    root.append(empty);
  }
  for (const conversation of state.conversations) {
    const section = document.createElement("section");
    section.className = "conversation";
    section.dataset.conversationId = conversation.id;
    const heading = document.createElement("h2");
    heading.id = `conversation-${conversation.id}`;
    section.setAttribute("aria-labelledby", heading.id);
    const title = document.createElement("span");
    title.textContent = conversation.title;
    heading.append(title);
    if (state.session.kind === "user") {
      const share = document.createElement("button");
      share.type = "button";
      share.textContent = "Share link";
      share.addEventListener("click", () => createShareLink(conversation, section));
      heading.append(share);
    }
    const list = document.createElement("ul");
    list.className = "members";
    list.setAttribute("aria-label", `Members of ${conversation.title}`);
    const online = conversation.members.filter((m) => m.isOnline).length;
    const summary = document.createElement("p");
    summary.className = "hint count";
    summary.textContent = conversation.count
      ? `${conversation.count.online} of ${conversation.count.total} online · large ` +
        `conversation, the first ${conversation.members.length} shown`
      : `${online} of ${conversation.members.length} online`;
    for (const record of conversation.members) list.append(memberItem(record));
    section.append(heading, summary, list);
    if (conversation.shareUrl) {
      const link = document.createElement("p");
      link.className = "share";
      link.textContent = `Guests join with ${conversation.shareUrl}`;
      section.append(link);
    }
    root.append(section);
  }
}

async function createShareLink(conversation, section) {
  try {
    const { data } = await api("POST", `/api/conversations/${conversation.id}/share-links`, {});
    conversation.shareUrl = `${location.origin}/?join=${encodeURIComponent(data.id)}`;
    renderConversations();
  } catch (error) {
    showError(`No share link: ${error.message}`);
  }
}

function applyRecord(record) {
  let changed = false;
  for (const conversation of state.conversations) {
    const index = conversation.members.findIndex((m) => m.userId === record.userId);
    if (index >= 0) {
      conversation.members[index] = { ...conversation.members[index], ...record };
      changed = true;
    }
  }
  return changed;
}

// -- live updates -----------------------------------------------------------------------------

function connect() {
  const client = connectPresence(
    state.session.kind === "guest"
      ? { sessionToken: state.session.token }
      : { token: state.session.token },
  );
  const { socket } = client;
  const status = $("#connection");
  socket.on("connect", () => {
    status.textContent = "live";
  });
  socket.on("disconnect", () => {
    status.textContent = "reconnecting…";
  });
  socket.on("connect_error", (error) => {
    status.textContent = "offline";
    showError(`Live updates refused: ${error.message}`);
  });
  client.store.subscribe((_, change) => {
    if (change.type === "snapshot") {
      for (const record of change.users) applyRecord(record);
      renderConversations();
    } else if (change.type === "status") {
      const known = applyRecord(change.record);
      if (!known) refreshConversations();
      else renderConversations();
      addToFeed(change.record);
    } else if (change.type === "subscribed") {
      for (const record of change.users) applyRecord(record);
      renderConversations();
    } else if (change.type === "count") {
      const conversation = state.conversations.find((c) => c.id === change.conversationId);
      if (conversation) {
        conversation.count = { online: change.online, total: change.total };
        renderConversations();
      }
    }
  });
  socket.on("error", (error) => showError(error?.message || "error"));
  state.socket = client;
  follow();
}

function addToFeed(record) {
  if (state.me?.role !== "admin") return;
  const item = document.createElement("li");
  const time = new Date().toLocaleTimeString();
  item.textContent = `${time} ${record.username}: ${record.status}`;
  const feed = $("#feed");
  feed.prepend(item);
  while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
}

// -- the admin's cluster panel ------------------------------------------------------------------

async function pollCluster() {
  try {
    const [{ data: stats }, { data: metrics }] = await Promise.all([
      api("GET", "/maintenance/stats"),
      api("GET", "/maintenance/status-metrics"),
    ]);
    const rows = [
      ["Workers", stats.workers],
      ["Leader", stats.leader || "none"],
      ["Online users", `${stats.onlineUsers} / ${stats.totalUsers}`],
      ["Online guests", `${stats.onlineAnonymous} / ${stats.anonymousSessions}`],
      ["Requests", metrics.totalRequests],
      ["Throttle rate", `${metrics.throttleRate.toFixed(1)} %`],
      ["Cache size", metrics.cacheSize],
      ["Failed writes", metrics.failedUpdates],
    ];
    $("#cluster-stats").replaceChildren(
      ...rows.map(([label, value]) => {
        const box = document.createElement("div");
        const dt = document.createElement("dt");
        dt.textContent = label;
        const dd = document.createElement("dd");
        dd.textContent = String(value);
        box.append(dt, dd);
        return box;
      }),
    );
    const now = Date.now();
    state.samples.push({ at: now, throttleRate: metrics.throttleRate, cacheSize: metrics.cacheSize });
    state.samples = state.samples.filter((s) => now - s.at <= CHART_WINDOW_MS);
    drawChart(now);
  } catch (error) {
    showError(`Cluster panel: ${error.message}`);
  }
}

function polyline(points, dashed) {
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", dashed ? "#6b7785" : "#1f6feb");
  line.setAttribute("stroke-width", "1.5");
  if (dashed) line.setAttribute("stroke-dasharray", "4 3");
  return line;
}

function drawChart(now) {
  const chart = $("#chart");
  const x = (at) => (300 * (CHART_WINDOW_MS - (now - at))) / CHART_WINDOW_MS;
  const maxCache = Math.max(1, ...state.samples.map((s) => s.cacheSize));
  const rate = state.samples.map((s) => `${x(s.at).toFixed(1)},${(78 - 0.76 * s.throttleRate).toFixed(1)}`);
  const cache = state.samples.map((s) => `${x(s.at).toFixed(1)},${(78 - (76 * s.cacheSize) / maxCache).toFixed(1)}`);
  chart.replaceChildren(polyline(rate, false), polyline(cache, true));
}

// -- sign in, join, start -----------------------------------------------------------------------

async function refreshConversations() {
  if (state.session.kind === "guest") {
    const { data } = await api("GET", `/api/conversations/${state.me.conversationId}/presence`);
    state.conversations = [{ id: data.conversationId, title: "Conversation", members: data.users }];
  } else {
    const { data } = await api("GET", "/api/conversations");
    const links = new Map(state.conversations.map((c) => [c.id, c.shareUrl]));
    state.conversations = data.map((c) => ({ ...c, shareUrl: links.get(c.id) }));
    // A large conversation's members are not listed: its first page (online first) and its
    // count, then the count as the room hears it and the shown members by subscription.
    for (const conversation of state.conversations) {
      if (conversation.members.length > 0 || conversation.memberIds.length === 0) continue;
      const path = `/api/conversations/${conversation.id}/presence?limit=${LARGE_PAGE}`;
      const { data: page } = await api("GET", path);
      conversation.members = page.users;
      conversation.count = { online: page.online, total: page.total };
    }
    follow();
  }
  renderConversations();
}

function follow() {
  const ids = state.conversations
    .filter((c) => c.count)
    .flatMap((c) => c.members.map((m) => m.userId));
  if (state.socket && ids.length) state.socket.subscribe([...new Set(ids)].slice(0, 200));
}

async function start() {
  try {
    const { data } = await api("GET", "/api/users/me");
    state.me = data;
  } catch (error) {
    if (error.status === 401) {
      signOut();
      showError("Your session ended; sign in again.");
      return;
    }
    throw error;
  }
  $("#login").hidden = true;
  $("#join").hidden = true;
  $("#me").hidden = false;
  $("#me-name").textContent = state.me.username || state.me.nickname;
  $("#my-status").value = state.me.presence?.manualStatus || "online";
  $("#my-status-text").value = state.me.presence?.statusText || "";
  $("#privacy").hidden = state.session.kind !== "user";
  if (state.session.kind === "user") {
    const { data } = await api("GET", "/api/users/me/privacy");
    $("#my-privacy").value = data.lastSeen;
  }
  $("#conversations").hidden = false;
  await refreshConversations();
  connect();
  if (state.me.role === "admin") {
    $("#cluster").hidden = false;
    pollCluster();
    state.pollTimer = setInterval(pollCluster, POLL_MS);
  }
}

function signOut() {
  localStorage.removeItem(SESSION_KEY);
  state.socket?.close();
  clearInterval(state.pollTimer);
  Object.assign(state, { session: null, me: null, conversations: [], socket: null, samples: [] });
  $("#me").hidden = true;
  $("#conversations").hidden = true;
  $("#cluster").hidden = true;
  $("#login").hidden = false;
}

function saveSession(session) {
  state.session = session;
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

function wire() {
  $("#login").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    try {
      const payload = await api("POST", "/api/auth/login", {
        email: $("#login-email").value,
        password: $("#login-password").value,
      });
      saveSession({ token: payload.token, kind: "user" });
      await start();
    } catch (error) {
      showError(error.message);
    }
  });
  $("#join").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const linkId = new URLSearchParams(location.search).get("join");
    try {
      const payload = await api("POST", `/api/anonymous/join/${encodeURIComponent(linkId)}`, {
        nickname: $("#join-nickname").value,
      });
      saveSession({ token: payload.sessionToken, kind: "guest" });
      history.replaceState(null, "", "/");
      await start();
    } catch (error) {
      showError(error.message);
    }
  });
  const setStatus = async () => {
    showError("");
    const choice = { status: $("#my-status").value, text: $("#my-status-text").value };
    const clearAfter = Number($("#my-status-until").value);
    if (clearAfter) choice.until = new Date(Date.now() + clearAfter * 1000).toISOString();
    try {
      await api("PUT", "/api/users/me/status", choice);
    } catch (error) {
      showError(error.message);
    }
  };
  $("#my-status").addEventListener("change", setStatus);
  $("#set-status").addEventListener("click", setStatus);
  $("#my-privacy").addEventListener("change", async (event) => {
    try {
      await api("PUT", "/api/users/me/privacy", { lastSeen: event.target.value });
    } catch (error) {
      showError(error.message);
    }
  });
  $("#sign-out").addEventListener("click", signOut);
  // "last seen 3 min ago" keeps ticking.
  setInterval(() => state.session && renderConversations(), 10_000);
}

function boot() {
  $("#build-hint").hidden = true;
  wire();
  const joining = new URLSearchParams(location.search).get("join");
  const saved = localStorage.getItem(SESSION_KEY);
  if (joining) {
    $("#join").hidden = false;
  } else if (saved) {
    state.session = JSON.parse(saved);
    start().catch((error) => showError(error.message));
  } else {
    $("#login").hidden = false;
  }
}

boot();
