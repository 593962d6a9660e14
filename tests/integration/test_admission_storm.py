"""Storms: connections are admitted a bounded number at a time (every socket still gets its
snapshot, never more admissions run together than the bound: unbounded, 3 000 reconnections at
once emptied the Redis pool), and the worker's liveness beat never waits for that pool."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from presence.clients import POOL_SIZE
from presence.realtime import server
from presence.realtime.admission import Admission
from tests.conftest import ClusterFactory
from tests.support.sio import Listener

BOUND = 3


async def test_a_storm_is_admitted_a_bounded_number_at_a_time(
    make_cluster: ClusterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "ADMISSIONS_AT_ONCE", BOUND)
    running = peak = 0
    admit = Admission.admit_and_greet

    async def counted(self: Admission, *args: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await admit(self, *args)
        finally:
            running -= 1

    monkeypatch.setattr(Admission, "admit_and_greet", counted)
    cluster = await make_cluster(1)
    tokens = [(await cluster.register(f"storm{i}"))[0] for i in range(4 * BOUND)]
    url = str(cluster[0].client.make_url("/"))
    tabs = [Listener(f"tab{i}") for i in range(len(tokens))]
    await asyncio.gather(
        *(tab.connect(url, auth={"token": token}) for tab, token in zip(tabs, tokens, strict=True))
    )
    await asyncio.gather(*(tab.wait_for("presence:snapshot") for tab in tabs))
    assert peak == BOUND  # the storm reached the bound, and never passed it
    assert (await cluster[0].c.presence.online_counts()).users == len(tokens)
    for tab in tabs:
        await tab.close()


async def test_the_worker_beats_while_its_pool_is_taken(make_cluster: ClusterFactory) -> None:
    """Every connection of the main pool in use (what a storm of closes did): the liveness
    beat has connections of its own, so the cluster does not take the worker for dead."""
    cluster = await make_cluster(1)
    worker = cluster[0]
    pool = worker.redis.connection_pool
    held = [await pool.get_connection() for _ in range(POOL_SIZE)]  # type: ignore[no-untyped-call]
    try:
        with pytest.raises(RedisConnectionError):
            await worker.redis.ping()  # the main pool has nothing left
        started = time.monotonic()
        assert await worker.c.registry.heartbeat()
        assert time.monotonic() - started < 1.0
    finally:
        for connection in held:
            await pool.release(connection)
