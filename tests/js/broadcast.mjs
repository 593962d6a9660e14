// The original's broadcast scenario with the stock socket.io-client v4: user 2 listens, user 1
// connects then disconnects. Prints what user 2 heard (and a refused handshake) as JSON.
import { io } from "socket.io-client";

const env = process.env;
const settleMs = Number(env.SETTLE_MS ?? "3000");
const transports = (env.TRANSPORTS ?? "websocket").split(",");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function connect(url, auth) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth, transports, reconnection: false, timeout: 10000 });
    socket.heard = [];
    socket.onAny((event, data) => socket.heard.push({ event, data }));
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", (err) => reject(err));
  });
}

async function until(predicate, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (predicate()) return true;
    await sleep(20);
  }
  return false;
}

const listener = await connect(env.LISTEN_URL, { token: env.TOKEN2 });
await until(() => listener.heard.some((h) => h.event === "presence:snapshot"), 10000);
const about = () => listener.heard.filter((h) => h.event === "user:status" && h.data.userId === env.USER1_ID);

const actor = await connect(env.ACT_URL, { token: env.TOKEN1 });
await until(() => about().length >= 1, 10000);
actor.disconnect();
await until(() => about().length >= 2, 15000);
await sleep(settleMs); // anything more would be a duplicate

let refused = null;
try {
  const bad = await connect(env.ACT_URL, { token: "not-a-jwt" });
  bad.disconnect();
} catch (err) {
  refused = { message: err.message, data: err.data ?? null };
}
listener.disconnect();
console.log(JSON.stringify({
  statuses: about().map((h) => h.data),
  events: listener.heard.map((h) => h.event),
  refused,
}));
process.exit(0);
