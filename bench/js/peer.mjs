// B12's clients, for presence (the stock socket.io-client) and for Centrifugo (its own
// `centrifuge` client over `ws`), driven by one JSON command per line on stdin, answering one
// JSON line per command on stdout. The same code measures both systems:
//
//   {"cmd":"open","group":G,"system":S,"urls":[..],"tokens":[..],"channels":[..],"concurrency":N}
//       opens one client per token (client i on urls[i % n], subscribed to channels[i] for
//       Centrifugo); a client counts once it is ready: presence's snapshot arrived, or
//       Centrifugo's subscription is confirmed. -> {"event":"opened","ok","failed","seconds"}
//   {"cmd":"watch","system":S,"url":U,"token":T,"channel":C}
//       one watcher that records every join and leave it hears (presence: `user:status`,
//       Centrifugo: the channel's join/leave pushes). -> {"event":"watching"}
//   {"cmd":"joins","group":G,"system":S,"url":U,"tokens":[..],"ids":[..],"channel":C,"rate":R}
//       starts one client every 1/R s (open loop: never waiting for the previous one) and
//       reports, per id, the milliseconds from its start to the watcher hearing it join.
//   {"cmd":"leaves","group":G,"ids":[..],"rate":R}
//       closes the group's clients at R per second; per id, ms from its close to the leave.
//   {"cmd":"close","group":G}, {"cmd":"quit"}
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";
import { Centrifuge } from "centrifuge";
import { io } from "socket.io-client";
import WebSocket from "ws";

const groups = new Map();
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const TIMEOUT_MS = 30000;

// The watcher's receipts: id -> list of [epoch ms, online].
const heard = new Map();
function record(id, online) {
  if (!heard.has(id)) heard.set(id, []);
  heard.get(id).push([now(), online]);
}

function openPresence(url, token, onStatus) {
  return new Promise((resolve) => {
    const socket = io(url, {
      auth: { token },
      transports: ["websocket"],
      reconnection: false,
      timeout: TIMEOUT_MS,
    });
    const giveUp = setTimeout(() => resolve(null), TIMEOUT_MS);
    socket.on("presence:snapshot", () => {
      clearTimeout(giveUp);
      resolve({ close: () => socket.disconnect() });
    });
    socket.on("connect_error", () => {
      clearTimeout(giveUp);
      resolve(null);
    });
    if (onStatus) socket.on("user:status", (s) => onStatus(s.userId, s.isOnline));
  });
}

function openCentrifugo(url, token, channel, onStatus) {
  return new Promise((resolve) => {
    const client = new Centrifuge(url, { token, websocket: WebSocket, minReconnectDelay: 60000 });
    const sub = client.newSubscription(channel, { joinLeave: true });
    const giveUp = setTimeout(() => {
      client.disconnect();
      resolve(null);
    }, TIMEOUT_MS);
    sub.on("subscribed", () => {
      clearTimeout(giveUp);
      resolve({ close: () => client.disconnect() });
    });
    sub.on("error", () => {});
    client.on("error", () => {});
    if (onStatus) {
      sub.on("join", (ctx) => onStatus(ctx.info.user, true));
      sub.on("leave", (ctx) => onStatus(ctx.info.user, false));
    }
    sub.subscribe();
    client.connect();
  });
}

function open(system, url, token, channel, onStatus) {
  return system === "centrifugo"
    ? openCentrifugo(url, token, channel, onStatus)
    : openPresence(url, token, onStatus);
}

function group(name) {
  if (!groups.has(name)) groups.set(name, new Map());
  return groups.get(name);
}

async function openMany(cmd) {
  const mine = group(cmd.group);
  const started = now();
  let next = 0;
  let ok = 0;
  const worker = async () => {
    while (next < cmd.tokens.length) {
      const i = next++;
      const channel = cmd.channels ? cmd.channels[i] : null;
      const client = await open(cmd.system, cmd.urls[i % cmd.urls.length], cmd.tokens[i], channel);
      if (client) {
        mine.set(`${mine.size}:${i}`, client);
        ok += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: cmd.concurrency }, worker));
  return { event: "opened", ok, failed: cmd.tokens.length - ok, seconds: (now() - started) / 1000 };
}

// Waits until the watcher heard `online` for every id after its own moment; returns the
// latencies in ms (null for one never heard within the timeout).
async function latencies(moments, online) {
  const deadline = now() + 15000;
  const found = new Map();
  while (found.size < moments.size && now() < deadline) {
    for (const [id, at] of moments) {
      if (found.has(id) || at === null) continue;
      const hit = (heard.get(id) ?? []).find(([t, o]) => o === online && t >= at);
      if (hit) found.set(id, hit[0] - at);
    }
    await sleep(5);
  }
  return [...moments.keys()].map((id) => (found.has(id) ? found.get(id) : null));
}

async function joins(cmd) {
  const mine = group(cmd.group);
  const moments = new Map();
  const started = now();
  const opening = cmd.tokens.map(async (token, i) => {
    const due = started + (i * 1000) / cmd.rate;
    await sleep(Math.max(0, due - now()));
    moments.set(cmd.ids[i], now());
    const client = await open(cmd.system, cmd.url, token, cmd.channel);
    if (client) mine.set(cmd.ids[i], client);
    else moments.set(cmd.ids[i], null);
  });
  await Promise.all(opening);
  return { event: "joined", ms: await latencies(moments, true) };
}

async function leaves(cmd) {
  const mine = group(cmd.group);
  const moments = new Map();
  const started = now();
  for (let i = 0; i < cmd.ids.length; i++) {
    const due = started + (i * 1000) / cmd.rate;
    await sleep(Math.max(0, due - now()));
    const client = mine.get(cmd.ids[i]);
    moments.set(cmd.ids[i], client ? now() : null);
    if (client) client.close();
    mine.delete(cmd.ids[i]);
  }
  return { event: "left", ms: await latencies(moments, false) };
}

function close(name) {
  for (const client of group(name).values()) client.close();
  groups.delete(name);
  return { event: "closed" };
}

say({ event: "ready" });
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  if (cmd.cmd === "open") say(await openMany(cmd));
  else if (cmd.cmd === "watch") {
    const watcher = await open(cmd.system, cmd.url, cmd.token, cmd.channel, record);
    if (watcher) group("watchers").set(String(group("watchers").size), watcher);
    say({ event: watcher ? "watching" : "watch_failed" });
  } else if (cmd.cmd === "joins") say(await joins(cmd));
  else if (cmd.cmd === "leaves") say(await leaves(cmd));
  else if (cmd.cmd === "close") say(close(cmd.group));
  else if (cmd.cmd === "quit") {
    for (const name of [...groups.keys()]) close(name);
    say({ event: "bye" });
    process.exit(0);
  }
}
