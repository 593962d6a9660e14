"""B7: connect, disconnect and reconnect storms of thousands of stock socket.io-client
connections over three workers, and a worker killed under them: time, failures, and
``user:status`` broadcasts per real transition."""

from __future__ import annotations

import time
from typing import Any

from bench import nodeclients
from bench.harness import Stack, Worker
from bench.report import Result
from presence.keys import Keys

KEY = "b07"
# The bench's Redis is standalone: every subject is in its one bucket.
BUCKET = Keys("presence:").bucket("")
TITLE = "Connect storm"
QUESTION = (
    "U users with 5 tabs each (5 × U websocket connections from two Node processes, at most "
    "200 handshakes in flight), the tabs of a user spread over 3 workers. (1) All connect; "
    "(2) all disconnect; (3) all connect again, then one worker is killed with SIGKILL and its "
    "clients reconnect to the others. Every `user:status` announcement is counted (the workers' "
    "`presence_broadcasts_total`: one emit per public transition, whatever the message queue "
    "then publishes). "
    "Target: broadcasts per real transition ≤ 1 — exactly U online in (1), U offline in (2), "
    "U online and then none at all in (3), since every user kept a connection — and no "
    "connection left registered for the dead worker once its liveness expired."
)
TABS = 5
# Liveness and lease at their production defaults: three workers share one core here, and a
# storm of thousands of handshakes delays their beats by seconds; a shrunk 3 s TTL made the
# leader take live workers for dead (and close their connections) in the middle of a storm.
TIMERS: dict[str, Any] = {
    "worker_ttl_s": 15,
    "leader_ttl_s": 15,
    "maintenance_interval_s": 1,
    "offline_grace_s": 5,
}


def _wait_connected(clients: nodeclients.NodeClients, want: int, limit_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    report = clients.report()
    while report["connected"] < want and time.monotonic() < deadline:
        time.sleep(0.5)
        report = clients.report()
    return report


def _settle(stack: Stack, workers: list[Worker], online: int, limit_s: float = 120) -> None:
    """Until Redis has decided every transition (``online`` subjects marked, no grace period
    pending) and the workers' broadcast counters stop moving: on this machine every transition
    waits on the test database, so a storm's announcements trail it by seconds."""
    redis = stack.redis()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        decided = redis.scard(BUCKET.online) == online and redis.zcard(BUCKET.pending_offline) == 0
        if decided:
            break
        time.sleep(0.5)
    last = -1.0
    while time.monotonic() < deadline:
        now = sum(
            w.metric("presence_broadcasts_total") for w in workers if w.process.poll() is None
        )
        if now == last:
            return
        last = now
        time.sleep(2.0)


def _announced(workers: list[Worker]) -> float:
    """``user:status`` emits so far, summed over the live workers: one per public transition
    (whatever the message queue then publishes: the routed queue sends an emit once to each
    worker with an audience for it, and to none when no other worker has one)."""
    return sum(w.metric("presence_broadcasts_total") for w in workers if w.process.poll() is None)


def _registered(stack: Stack) -> int:
    redis = stack.redis()
    keys = redis.scan_iter(match=BUCKET.connections_prefix + "*", count=1000)
    return sum(int(redis.hlen(k)) for k in keys)


def run(stack: Stack, quick: bool) -> Result:
    # SPEC §13 asks for 10 000 clients; on one core for three workers that is ~150 s of CPU, and
    # the workers' beats starve (see docs/BENCHMARKS.md, B7).
    users = 200 if quick else 1000
    count = users * TABS
    result = Result.begin(
        KEY,
        TITLE,
        QUESTION,
        quick,
        settings={"users": users, "tabs": TABS, "connections": count, "workers": 3, **TIMERS},
    )
    if not nodeclients.available():
        raise RuntimeError("node and bench/js/node_modules are needed: make bench installs them")
    accounts = stack.seed_users(users)
    workers = stack.start_workers(3, **TIMERS)
    clients = nodeclients.NodeClients(
        stack.run_dir,
        [w.url for w in workers],
        [a.token for a in accounts],
        count,
        tabs=TABS,
        processes=2,
        concurrency=200,
    )
    grace = TIMERS["offline_grace_s"]
    try:
        before = _announced(workers)
        storm = clients.connect()
        _settle(stack, workers, users)
        online = _announced(workers) - before
        result.repetitions.append({"phase": "connect", **storm, "status_announcements": online})

        before = _announced(workers)
        took = clients.disconnect()
        time.sleep(grace)
        _settle(stack, workers, 0)
        offline = _announced(workers) - before
        result.repetitions.append(
            {
                "phase": "disconnect",
                "seconds": took,
                "status_announcements": offline,
                # Redis calls the workers could not make (a pool exhausted by the storm, say).
                "redis_errors": sum(w.metric("presence_redis_errors_total") for w in workers),
            }
        )

        before = _announced(workers)
        again = clients.connect()
        _settle(stack, workers, users)
        again_online = _announced(workers) - before
        result.repetitions.append(
            {"phase": "reconnect", **again, "status_announcements": again_online}
        )

        victim = workers[0]
        survivors = workers[1:]
        before = _announced(survivors)
        killed = time.monotonic()
        victim.stop(kill=True)
        back = _wait_connected(clients, count, 60)
        recovered = time.monotonic() - killed
        bound = TIMERS["worker_ttl_s"] + TIMERS["maintenance_interval_s"] + grace + 2
        time.sleep(max(0.0, killed + bound - time.monotonic()))
        flaps = _announced(survivors) - before
        registered = _registered(stack)
        delays = sorted(back["reconnect_ms"])
        result.repetitions.append(
            {
                "phase": "worker killed",
                "connected": back["connected"],
                "reconnected": back["reconnects"],
                "seconds_to_all_connected": recovered,
                "status_announcements": flaps,
                "registered_connections": registered,
                "reconnect_ms_p50": delays[len(delays) // 2] if delays else None,
                "reconnect_ms_max": delays[-1] if delays else None,
                "refused_retries": back["refused_retries"],
            }
        )
    finally:
        clients.close()

    result.metric(
        "(1) connect storm: time",
        "s",
        [storm["seconds"]],
        target="≤ 30 s",
        met=storm["seconds"] <= 30,
    )
    result.metric(
        "(1) connect storm: failures",
        "count",
        [storm["failed"]],
        kind="count",
        target="0",
        met=storm["failed"] == 0,
        gate=True,
    )
    result.metric(
        "(1) online broadcasts ÷ users",
        "ratio",
        [online / users],
        kind="count",
        target="1",
        met=online == users,
        gate=True,
    )
    result.metric(
        "(2) disconnect: offline broadcasts ÷ users",
        "ratio",
        [offline / users],
        kind="count",
        target="1",
        met=offline == users,
        gate=True,
    )
    result.metric("(3) reconnect storm: time", "s", [again["seconds"]])
    result.metric(
        "(3) reconnect storm: failures",
        "count",
        [again["failed"]],
        kind="count",
        target="0",
        met=again["failed"] == 0,
        gate=True,
    )
    result.metric(
        "(3) online broadcasts ÷ users",
        "ratio",
        [again_online / users],
        kind="count",
        target="1",
        met=again_online == users,
        gate=True,
    )
    result.metric(
        "(3) worker killed: clients back",
        "count",
        [float(back["connected"])],
        kind="count",
        target=f"{count}",
        met=back["connected"] == count,
        gate=True,
    )
    result.metric(
        "(3) worker killed: time until all back",
        "s",
        [recovered],
        target="≤ 10 s",
        met=recovered <= 10,
    )
    result.metric(
        "(3) worker killed: status broadcasts (no real transition)",
        "count",
        [float(flaps)],
        kind="count",
        target="0",
        met=flaps == 0,
        gate=True,
    )
    result.metric(
        "(3) connections registered after the bound",
        "count",
        [float(registered)],
        kind="count",
        target=f"= clients connected, {back['connected']} (no ghosts)",
        met=registered == back["connected"],
        gate=True,
    )
    result.notes.append(
        "SPEC §13 asks for 10 000 clients (2 000 users × 5 tabs) within 30 s. Here the three "
        "workers share one core: 10 000 connects are about 150 s of its CPU, and a storm that "
        "long delays each worker's own liveness beats past their 15 s TTL, so the cluster "
        "takes live workers for dead and their users flap. The full run keeps 5 000; beats "
        "that a saturated event loop cannot delay are still to be built."
    )
    if offline != users:
        result.notes.append(
            f"(2) {users - offline} of {users} users had no offline announcement within the "
            "settle limit after every tab closed; (3) then counts only the users that really "
            "went offline."
        )
    if registered != back["connected"]:
        result.notes.append(
            f"(3) {registered} connections were registered once the dead worker's liveness had "
            f"expired, for {back['connected']} clients connected."
        )
    if back["connected"] != count:
        result.notes.append(
            f"(3) {count - back['connected']} of {count} clients were not connected again 60 s "
            f"after the kill; {back['refused_retries']} re-homing attempts were refused or "
            "timed out and tried again."
        )
    return result
