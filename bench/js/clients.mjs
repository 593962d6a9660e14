// Many socket.io-client connections, driven by commands on stdin, reporting JSON lines on
// stdout. Client i authenticates with token TOKENS[i / TABS] (TABS connections per user) and
// connects to URLS[(i + floor(i / TABS)) % URLS.length], so a user's tabs sit on different
// workers. A client dropped by its server (not by us) reconnects to the next worker URL, and
// when that attempt is refused or times out it tries the next one after a back-off, up to
// RETRIES times, as socket.io-client's own reconnection would (a first connect is not retried:
// the storm counts its failures).
//
// Commands: "connect", "disconnect", "report", "quit".
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const env = process.env;
const urls = env.URLS.split(",");
const tokens = readFileSync(env.TOKENS_FILE, "utf8").split("\n").filter(Boolean);
const tabs = Number(env.TABS ?? "1");
const count = Number(env.COUNT);
const first = Number(env.FIRST ?? "0"); // index of this process's first client
const concurrency = Number(env.CONCURRENCY ?? "200");

const clients = new Array(count).fill(null);
let reconnects = [];
let refusedRetries = 0; // re-homing attempts that failed and were tried again
const RETRIES = 10;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function open(index, urlIndex) {
  const global = first + index;
  const token = tokens[Math.floor(global / tabs)];
  return new Promise((resolve) => {
    // Neither connected nor refused within this long counts as a failure (never a hang).
    const giveUp = setTimeout(() => resolve(false), 30000);
    const socket = io(urls[urlIndex % urls.length], {
      auth: { token },
      transports: ["websocket"],
      reconnection: false,
      timeout: 20000,
      perMessageDeflate: env.DEFLATE === "0" ? false : { threshold: 1024 },
    });
    socket.urlIndex = urlIndex;
    socket.on("connect", () => {
      clearTimeout(giveUp);
      resolve(true);
    });
    socket.on("connect_error", () => {
      clearTimeout(giveUp);
      resolve(false);
    });
    socket.on("disconnect", (reason) => {
      if (socket.closing) return;
      // The server went away: reconnect elsewhere, as a browser's retry would.
      rehome(index, urlIndex + 1, Date.now());
    });
    clients[index] = socket;
  });
}

async function rehome(index, urlIndex, lost) {
  for (let attempt = 0; attempt <= RETRIES; attempt++) {
    if (attempt > 0) {
      refusedRetries += 1;
      await sleep(Math.min(500 * 2 ** (attempt - 1), 5000));
    }
    if (await open(index, urlIndex + attempt)) {
      reconnects.push(Date.now() - lost);
      return;
    }
  }
}

async function pool(jobs) {
  let next = 0;
  let ok = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++];
      if (await job()) ok += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return ok;
}

async function connectAll() {
  const started = Date.now();
  reconnects = [];
  const ok = await pool(
    clients.map((_, i) => () => open(i, (first + i + Math.floor((first + i) / tabs)) % urls.length)),
  );
  say({ event: "connected", ok, failed: count - ok, seconds: (Date.now() - started) / 1000 });
}

function disconnectAll() {
  const started = Date.now();
  for (const socket of clients) {
    if (socket) {
      socket.closing = true;
      socket.disconnect();
    }
  }
  say({ event: "disconnected", seconds: (Date.now() - started) / 1000 });
}

function report() {
  const connected = clients.filter((s) => s && s.connected).length;
  say({
    event: "report",
    connected,
    reconnects: reconnects.length,
    reconnectMs: reconnects,
    refusedRetries,
  });
}

say({ event: "ready" });
for await (const line of createInterface({ input: process.stdin })) {
  const command = line.trim();
  if (command === "connect") await connectAll();
  else if (command === "disconnect") disconnectAll();
  else if (command === "report") report();
  else if (command === "quit") {
    disconnectAll();
    process.exit(0);
  }
}
