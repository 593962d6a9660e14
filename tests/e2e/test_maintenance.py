"""The maintenance leader and the sweep, with real worker processes killed and stopped for real,
real Redis and the real MongoDB-compatible server; timers shrunk by configuration."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from devstack.servers import Server, redis_server, redis_url_of
from tests.conftest import EVERY_REDIS_MODE, service_env
from tests.e2e.conftest import WorkersFactory
from tests.support.accounts import call, pair, register
from tests.support.processes import WorkerProcess, clean_env, scrape, start_worker, until_healthy
from tests.support.sio import Listener
from tests.support.waiting import until

LEASE_TTL_S = 1.5
TIMERS = {
    "leader_ttl_s": str(LEASE_TTL_S),
    "worker_ttl_s": "1.5",
    "maintenance_interval_s": "0.5",
    "offline_threshold_s": "2",
    "throttle_interval_s": "1",
    "offline_grace_s": "0.5",
    "ping_interval_s": "0.5",
    "ping_timeout_s": "2",
}


async def metric(worker: WorkerProcess, name: str) -> float:
    return await scrape(worker.url, name)


async def total(workers: list[WorkerProcess], name: str) -> float:
    return sum([await metric(w, name) for w in workers])


async def leaders(workers: list[WorkerProcess]) -> list[str]:
    """Ids (the log names) of the running workers whose leader gauge is 1."""
    return [
        w.log_path.stem
        for w in workers
        if w.process.poll() is None and await metric(w, "presence_leader") == 1
    ]


async def the_leader(workers: list[WorkerProcess]) -> WorkerProcess:
    found = await leaders(workers)
    assert len(found) == 1, found
    return next(w for w in workers if w.log_path.stem == found[0])


def one_leader(workers: list[WorkerProcess]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(await leaders(workers)) == 1

    return check


def epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@EVERY_REDIS_MODE
async def test_exactly_one_leader_and_failover_after_kill_9(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(3, **TIMERS)
    await until(one_leader(workers), 10)
    samples = []
    for _ in range(40):
        samples.append(len(await leaders(workers)))
        await asyncio.sleep(0.05)
    assert samples == [1] * len(samples)

    old = await the_leader(workers)
    survivors = [w for w in workers if w is not old]
    runs_before = await total(survivors, "presence_maintenance_runs_total")
    epoch_before = await metric(old, "presence_leader_epoch")
    old.process.send_signal(signal.SIGKILL)
    old.process.wait()
    took = await until(one_leader(survivors), 10)
    # Another leads within the lease TTL (plus one election poll, a third of it).
    assert took <= LEASE_TTL_S * 4 / 3 + 0.5
    print(f"failover: a new leader {took:.2f} s after kill -9 (lease TTL {LEASE_TTL_S} s)")
    new = await the_leader(survivors)
    assert await metric(new, "presence_leader_epoch") > epoch_before

    async def three_more_runs() -> bool:
        return await total(survivors, "presence_maintenance_runs_total") >= runs_before + 3

    await until(three_more_runs, 5)
    for _ in range(20):
        assert len(await leaders(survivors)) == 1
        await asyncio.sleep(0.05)


async def test_a_stalled_ex_leader_writes_nothing_after_another_took_over(
    start_workers: WorkersFactory, mongo_url: str
) -> None:
    workers = await start_workers(3, **TIMERS)
    await until(one_leader(workers), 10)
    stalled = await the_leader(workers)
    others = [w for w in workers if w is not stalled]
    stalled.process.send_signal(signal.SIGSTOP)
    try:
        await until(one_leader(others), 10)
        took_over_at = time.time()
        # Work for a sweeper: REST-only subjects that go quiet while the ex-leader is stopped.
        accounts = [await register(others[0].url, f"quiet{i}") for i in range(5)]
        for account in accounts:
            status, _ = await call("GET", f"{others[0].url}/api/users/me", headers=account.bearer)
            assert status == 200
        await asyncio.sleep(2.5)  # past the offline threshold
    finally:
        stalled.process.send_signal(signal.SIGCONT)
    await asyncio.sleep(3.0)  # the resumed ex-leader's overdue timers all fire now

    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        users = mongo[stalled.env["PRESENCE_MONGO_DB"]]["users"]
        swept = await users.find({"sweptBy": {"$exists": True}}).to_list()
    finally:
        await mongo.close()
    stalled_id = stalled.log_path.stem
    assert {d["_id"] for d in swept} >= {a.id for a in accounts}  # the work was there
    late = [
        d for d in swept if d["sweptBy"] == stalled_id and d["sweptAt"].timestamp() > took_over_at
    ]
    assert late == []
    assert len(await leaders(workers)) == 1
    assert stalled.process.poll() is None


@EVERY_REDIS_MODE
async def test_a_quiet_rest_only_subject_is_swept_once_with_its_real_last_seen(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(2, **TIMERS)
    one, two = await pair(workers[0].url)
    listener = Listener("two")
    await listener.connect(workers[1].url, auth={"token": two.token})
    await listener.wait_for("presence:snapshot")
    status, _ = await call("GET", f"{workers[0].url}/api/users/me", headers=one.bearer)
    last_request = time.time()
    assert status == 200
    statuses = await listener.wait_status(one.id, 2, timeout_s=10)
    offline_heard = next(h.at for h in listener.heard if h.data is statuses[1])
    assert [s["isOnline"] for s in statuses] == [True, False]
    assert abs(epoch(statuses[1]["lastSeen"]) - last_request) < 1.0
    # Within the threshold (2 s) plus one sweep interval (0.5 s), with room for scheduling.
    assert offline_heard - last_request <= 2 + 0.5 + 1.0
    print(
        f"quiet REST subject: offline heard {offline_heard - last_request:.2f} s after its "
        "last request (threshold 2 s, sweep every 0.5 s)"
    )
    await asyncio.sleep(1.5)
    assert len(listener.statuses_of(one.id)) == 2
    await listener.close()


async def test_kill_9_of_the_worker_holding_the_only_connection_takes_the_subject_offline(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(3, **TIMERS)
    one, two = await pair(workers[0].url)
    listener = Listener("two")
    await listener.connect(workers[1].url, auth={"token": two.token})
    await listener.wait_for("presence:snapshot")
    victim = workers[2]
    client = Listener("one")
    await client.connect(victim.url, auth={"token": one.token})
    await listener.wait_status(one.id, 1)
    victim.process.send_signal(signal.SIGKILL)
    killed_at = time.time()
    victim.process.wait()
    statuses = await listener.wait_status(one.id, 2, timeout_s=20)
    offline_heard = next(h.at for h in listener.heard if h.data is statuses[1])
    assert statuses[1]["isOnline"] is False
    # worker TTL 1.5 + sweep 0.5 + grace 0.5 + a lease failover (1.5 + 0.5) if the leader died
    assert offline_heard - killed_at < 6.0
    print(
        f"crashed worker: offline heard {offline_heard - killed_at:.2f} s after kill -9 "
        "(worker TTL 1.5 s, sweep 0.5 s, grace 0.5 s)"
    )
    await asyncio.sleep(1.0)
    assert len(listener.statuses_of(one.id)) == 2
    await asyncio.wait_for(client.disconnected.wait(), timeout=60)  # its worker is gone
    await listener.close()


@pytest.fixture
def own_redis() -> Iterator[Server]:
    server = redis_server()
    server.start()
    yield server
    server.cleanup()


async def test_a_connected_subject_is_never_swept_across_sweeps_failover_and_redis_restart(
    tmp_path: Path, own_redis: Server, mongo_url: str
) -> None:
    extra = {f"PRESENCE_{k.upper()}": v for k, v in TIMERS.items()}
    env = clean_env(**service_env(redis_url_of(own_redis), mongo_url, **extra))
    workers = [start_worker(env, tmp_path, f"w{i}") for i in range(3)]
    try:
        for worker in workers:
            await until_healthy(worker)
        await until(one_leader(workers), 10)
        leader = await the_leader(workers)
        others = [w for w in workers if w is not leader]
        one, two = await pair(others[0].url)
        client = Listener("one")
        await client.connect(others[0].url, auth={"token": one.token})
        listener = Listener("two")
        await listener.connect(others[1].url, auth={"token": two.token})
        await listener.wait_for("presence:snapshot")
        await asyncio.sleep(3.0)  # quiet past the threshold, across several sweeps

        leader.process.send_signal(signal.SIGKILL)
        leader.process.wait()
        await until(one_leader(others), 10)
        await asyncio.sleep(2.0)

        own_redis.kill()
        await asyncio.sleep(1.0)
        own_redis.start()

        async def ready() -> bool:
            return (await call("GET", others[1].url + "/readyz"))[0] == 200

        await until(ready, 30)
        await asyncio.sleep(3.0)  # re-registration, and sweeps by whoever leads now

        assert [s["isOnline"] for s in listener.statuses_of(one.id)] in ([], [True])
        status, body = await call(
            "GET", f"{others[1].url}/api/users/presence?ids={one.id}", headers=two.bearer
        )
        assert status == 200 and body["data"]["users"][0]["isOnline"] is True
        assert client.client.connected
        assert await total(others, "presence_maintenance_runs_total") > 0
        await client.close()
        await listener.close()
    finally:
        for worker in workers:
            worker.stop()


async def test_graceful_shutdown_with_a_reconnect_elsewhere_sends_no_flap(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(3, **{**TIMERS, "offline_grace_s": "2"})
    one, two = await pair(workers[0].url)
    listener = Listener("two")
    await listener.connect(workers[2].url, auth={"token": two.token})
    await listener.wait_for("presence:snapshot")
    first = Listener("one-on-w0")
    await first.connect(workers[0].url, auth={"token": one.token})
    await listener.wait_status(one.id, 1)
    moved = Listener("one-on-w1")

    workers[0].process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(first.disconnected.wait(), timeout=10)
    await moved.connect(workers[1].url, auth={"token": one.token})  # the client's reconnect
    workers[0].process.wait(timeout=15)
    assert workers[0].process.returncode == 0
    await asyncio.sleep(3.0)  # past the grace period
    assert [s["isOnline"] for s in listener.statuses_of(one.id)] == [True]
    await moved.close()
    await listener.close()
