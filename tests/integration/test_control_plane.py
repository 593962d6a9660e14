"""Storms: a storm of connections can take every connection of the main Redis pool, and the
worker's liveness beat never waits for that pool."""

from __future__ import annotations

import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from presence.clients import POOL_SIZE
from tests.conftest import ClusterFactory


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
