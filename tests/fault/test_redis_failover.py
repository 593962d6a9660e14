"""Scenario 11: ``kill -9`` of the Redis master while REST and socket load runs, on Sentinel
(the sentinels promote the replica) and on Cluster (the killed master's replica takes over its
slots). Every worker must follow by itself, with nothing lost beyond one throttle window."""

from __future__ import annotations

import asyncio
import time

import pytest

from devstack.redis_modes import ClusterTopology, SentinelTopology
from tests.fault.checks import THROTTLE_S, cross_worker_delivery, epoch, mismatches, none_of
from tests.fault.report import Row
from tests.fault.stack import Stack
from tests.fault.truth import RestLoad, Tab, Truth, accounts, observer_of, wait_until

# Errors a worker must never let reach a client or its log: a script or transaction across
# slots, or a redirection the client did not follow.
CLUSTER_ERRORS = ("CROSSSLOT", "MOVED", "ASK ")


def _kill_master(stack: Stack) -> tuple[str, float]:
    """Kill the master (SIGKILL); wait until Redis serves every slot again from a promoted
    replica. Returns what was killed and the seconds the promotion took. (Blocking.)"""
    topology = stack.topology
    if isinstance(topology, SentinelTopology):
        port = topology.master_port()
        topology.data_node(port).kill()
        return f"master :{port}", topology.wait_promoted(port)
    assert isinstance(topology, ClusterTopology)
    # The master serving the shard channel of the message queue: the hardest one to lose.
    master = topology.masters()[0]
    master.kill()
    return f"cluster master :{master.port}", topology.wait_failed_over(master.port)


@pytest.mark.scenario(11)
@pytest.mark.parametrize("stack", ["sentinel", "cluster"], indirect=True)
async def test_kill_9_of_the_redis_master_under_load(stack: Stack, row: Row) -> None:
    mode = stack.topology.mode
    row.done = (
        f"{mode}: 3 workers started with the {mode} URL; 8 REST subjects (heartbeat every"
        " 0.5 s) and 6 socket subjects; the master SIGKILLed while the load runs"
    )
    row.checked = (
        "the replica is promoted and every worker follows it by itself: no worker exits, every"
        " /readyz 200 again, presence equals the truth within 15 s of the promotion, a subject"
        " connecting on each worker is heard on every worker, no lastActiveAt lost beyond one"
        " throttle window, no request refused, no CROSSSLOT or MOVED error in any worker's log"
    )
    await stack.start_workers(3)
    pids = stack.pids()
    base = stack.urls()[0]
    rest = await accounts(base, 8, "rest")
    socket_subjects = await accounts(base, 6, "sock")
    everyone = rest + socket_subjects
    observer = await observer_of(base, everyone)
    truth = Truth()
    load = RestLoad(rest, stack.urls, truth, 0.5)
    tabs = [Tab(s, stack.urls, truth, i) for i, s in enumerate(socket_subjects)]
    load.start()
    for tab in tabs:
        tab.start()
    converged, _ = await wait_until(
        lambda: none_of(mismatches(stack, truth, observer, everyone)), timeout_s=20
    )
    assert converged, await mismatches(stack, truth, observer, everyone)
    before = await stack.users()

    killed, promotion_s = await asyncio.to_thread(_kill_master, stack)
    promoted_at = time.monotonic()
    row.measure(f"{killed} killed; Redis whole again {promotion_s:.1f} s later")

    async def all_ready() -> bool:
        return all([await stack.readiness(url) == 200 for url in stack.urls()])

    ready, ready_s = await wait_until(all_ready, timeout_s=15)
    assert ready, "a worker stayed unready after the promotion"
    row.measure(f"/readyz 200 on every worker {ready_s:.1f} s after the promotion")
    converged, _ = await wait_until(
        lambda: none_of(mismatches(stack, truth, observer, everyone)), timeout_s=15
    )
    assert converged, await mismatches(stack, truth, observer, everyone)
    row.measure(
        f"presence equals the truth {time.monotonic() - promoted_at:.1f} s after the promotion"
        " (bound 15)"
    )
    slowest = await cross_worker_delivery(stack, observer, "after")
    row.measure(f"cross-worker delivery on all 3 workers (slowest {slowest:.2f} s)")

    await load.stop()
    for tab in tabs:
        await tab.stop()
    await asyncio.sleep(THROTTLE_S + 1)
    after = await stack.users()
    lags = []
    for subject in rest:
        old = epoch(before[subject.id].get("lastActiveAt"))
        new = epoch(after[subject.id].get("lastActiveAt"))
        served = truth.last_served(subject.id)
        assert new is not None and served is not None, subject.name
        assert old is None or new >= old, f"{subject.name}: lastActiveAt moved back"
        assert new >= served - THROTTLE_S - 0.5, f"{subject.name}: lost {served - new:.1f} s"
        lags.append(served - new)
    row.measure(f"lastActiveAt behind the last served request by at most {max(lags):.2f} s")
    ok, sent = truth.answered()
    assert ok == sent, f"{sent - ok} of {sent} requests refused"
    row.measure(f"{ok} of {sent} requests answered 2xx")
    logs = {name: w.output() for name, w in stack.workers.items()}
    leaked = {n: e for n, text in logs.items() for e in CLUSTER_ERRORS if e in text}
    assert leaked == {}, leaked
    assert stack.crashed() == [] and stack.pids() == pids
