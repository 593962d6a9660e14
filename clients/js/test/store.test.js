// The store's rules, without a server: snapshots replace, statuses update, states name members.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PresenceStore } from "../src/index.js";

const record = (userId, status, extra = {}) => ({
  userId,
  username: userId,
  isAnonymous: false,
  isOnline: status !== "offline",
  status,
  lastActiveAt: null,
  lastSeen: null,
  ...extra,
});

test("a snapshot replaces what was known, a status updates one record", () => {
  const store = new PresenceStore();
  store.snapshot({ users: [record("a", "online"), record("b", "offline")] });
  store.status(record("b", "dnd"));
  assert.equal(store.get("b").status, "dnd");
  store.snapshot({ users: [record("a", "away")], resync: true });
  assert.equal(store.get("a").status, "away");
  assert.equal(store.get("b"), undefined, "a resync forgets what it does not list");
});

test("a state names a conversation's members, in its order", () => {
  const store = new PresenceStore();
  store.state({ conversationId: "c", users: [record("b", "online"), record("a", "offline")] });
  assert.deepEqual(
    store.members("c").map((r) => r.userId),
    ["b", "a"],
  );
  store.status(record("a", "online"));
  assert.equal(store.members("c")[1].status, "online");
  assert.deepEqual(store.members("unknown"), []);
});

test("subscribers hear every change, and a broken one does not silence the others", (t) => {
  const store = new PresenceStore();
  const heard = [];
  const logged = t.mock.method(console, "error", () => {});
  store.subscribe(() => {
    throw new Error("broken subscriber");
  });
  const stop = store.subscribe((_, change) => heard.push(change.type));
  store.snapshot({ users: [] });
  store.status(record("a", "online"));
  stop();
  store.status(record("a", "away"));
  assert.deepEqual(heard, ["snapshot", "status"]);
  assert.equal(logged.mock.callCount(), 3);
  assert.equal(logged.mock.calls[0].arguments[1].message, "broken subscriber");
});

test("followed subjects and large conversations' counts are kept", () => {
  const store = new PresenceStore();
  const changes = [];
  store.subscribe((_, change) => changes.push(change.type));
  store.subscribed({ users: [record("x", "online")] });
  assert.equal(store.get("x").status, "online");
  store.counted({ conversationId: "big", online: 3, total: 5000 });
  store.counted({ conversationId: "big", online: 4, total: 5000 });
  assert.deepEqual(store.countOf("big"), { online: 4, total: 5000 });
  assert.equal(store.countOf("small"), undefined);
  assert.deepEqual(changes, ["subscribed", "count", "count"]);
});
