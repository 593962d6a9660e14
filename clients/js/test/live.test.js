// The client against a real presence cluster (started by tests/e2e/test_js_client.py, which
// passes its addresses and two users' tokens): the store follows the server through joins,
// status changes, a dropped connection and a close.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
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

// The cluster runs with PRESENCE_ROOM_FANOUT_LIMIT=2: the three-member "crowd" is large.
test("a large conversation is heard by its count, its members by subscription", async () => {
  const crowd = need("PRESENCE_TEST_CROWD");
  const idC = need("PRESENCE_TEST_ID_C");
  const a = connect({ url: urlA, token: tokenA, trackInput: false });
  clients.push(a);
  await until(() => a.user !== null && a.store.all().length > 0, "a's snapshot");
  assert.equal(a.store.get(idC), undefined, "a large room's members are not in the snapshot");
  a.join(crowd);
  await until(() => a.store.countOf(crowd)?.total === 3, "the crowd's count");
  a.subscribe([idC]);
  await until(() => a.store.get(idC) !== undefined, "c's record, once followed");
  assert.equal(a.store.get(idC).isOnline, false);
  const before = a.store.countOf(crowd).online;
  const c = connect({ url: urlB, token: need("PRESENCE_TEST_TOKEN_C"), trackInput: false });
  clients.push(c);
  await until(() => a.store.get(idC)?.isOnline === true, "a hearing c online on the other worker");
  await until(() => a.store.countOf(crowd).online === before + 1, "the count following c");
  c.close();
  await until(() => a.store.get(idC)?.isOnline === false, "a hearing c go offline");
  await until(() => a.store.countOf(crowd).online === before, "the count following c again");
});

test("a resync snapshot replaces the store after the server's listener was interrupted", async () => {
  const a = connect({ url: urlA, token: tokenA, trackInput: false });
  clients.push(a);
  await until(() => a.user !== null && a.store.get(idB) !== undefined, "a's snapshot");
  const resyncs = [];
  a.store.subscribe((_, change) => change.type === "snapshot" && change.resync && resyncs.push(change));
  // The test's harness kills the workers' pub/sub connections when this file appears.
  const signal = join(need("PRESENCE_TEST_SIGNALS"), "kill-pubsub");
  writeFileSync(signal, "");
  await until(() => resyncs.length >= 1, "a resync snapshot", 15_000);
  assert.ok(a.store.get(idB), "the store holds what the resync said");
  assert.ok(!existsSync(signal));
});
