// The presence client: connect with a token (or a guest's session token), and read presence
// from a store that the server's events keep right, through reconnections and resyncs.
import { io } from "socket.io-client";
import { PresenceStore } from "./store.js";

export { PresenceStore };

const ACTIVITY_EVERY_MS = 30_000;
const INPUT_EVENTS = ["pointerdown", "keydown", "touchstart", "wheel"];

/**
 * @param {import("./index.d.ts").ConnectOptions} options
 * @returns {import("./index.d.ts").PresenceClient}
 */
export function connect(options) {
  const { url, token, sessionToken } = options;
  if (!token === !sessionToken) throw new TypeError("give exactly one of token and sessionToken");
  const auth = token ? { token } : { sessionToken };
  const store = new PresenceStore();
  const socket = io(url, {
    auth,
    transports: options.transports || ["websocket"],
    // socket.io-client's own reconnection: exponential back-off with jitter.
    reconnection: true,
    reconnectionDelay: options.reconnectionDelayMs ?? 500,
    reconnectionDelayMax: options.reconnectionDelayMaxMs ?? 10_000,
    randomizationFactor: 0.5,
  });
  const joined = new Set();
  let following = []; // the ids of the last subscribe()
  let lastActivity = 0;
  let identity = null;

  socket.on("authenticated", ({ user }) => {
    identity = user;
    // A new connection (a reconnection too) is in no conversation room it was not given:
    // join again the ones this client had joined.
    for (const id of joined) socket.emit("conversation:join", { conversationId: id });
    if (following.length) socket.emit("presence:subscribe", { ids: following });
  });
  socket.on("presence:snapshot", (snapshot) => {
    store.snapshot(snapshot);
    // A resync replaced every record: the followed ones come back with a new subscription.
    if (snapshot.resync && following.length) socket.emit("presence:subscribe", { ids: following });
  });
  socket.on("presence:subscribed", (answer) => store.subscribed(answer));
  socket.on("presence:count", (count) => store.counted(count));
  socket.on("user:status", (record) => store.status(record));
  socket.on("presence:state", (state) => store.state(state));

  /** Tell the server the person is here (at most once per `activityEveryMs`). */
  function activity() {
    const now = Date.now();
    if (now - lastActivity < (options.activityEveryMs ?? ACTIVITY_EVERY_MS)) return false;
    lastActivity = now;
    // `activity` is the person (it ends automatic away); `heartbeat` would only be the client.
    if (socket.connected) socket.emit("activity", {});
    return true;
  }

  const target = options.inputTarget ?? (typeof window === "undefined" ? null : window);
  const onInput = () => activity();
  if (target && options.trackInput !== false) {
    for (const name of INPUT_EVENTS) target.addEventListener(name, onInput, { passive: true });
  }

  return {
    socket,
    store,
    get user() {
      return identity;
    },
    activity,
    join(conversationId) {
      joined.add(conversationId);
      if (socket.connected) socket.emit("conversation:join", { conversationId });
    },
    /** Follow these subjects (at most 200; replaces the previous list), wherever they are. */
    subscribe(ids) {
      following = [...ids];
      if (socket.connected) socket.emit("presence:subscribe", { ids: following });
    },
    unsubscribe() {
      following = [];
      if (socket.connected) socket.emit("presence:unsubscribe", {});
    },
    setStatus(status, { text, until } = {}) {
      const choice = { status };
      if (text !== undefined) choice.text = text;
      if (until !== undefined) choice.until = until instanceof Date ? until.toISOString() : until;
      socket.emit("presence:set", choice);
    },
    close() {
      if (target) for (const name of INPUT_EVENTS) target.removeEventListener(name, onInput);
      socket.disconnect();
    },
  };
}
