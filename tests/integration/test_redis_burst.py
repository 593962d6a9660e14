"""A burst of first requests larger than the Redis connection pool queues for a connection
instead of failing: every activity is recorded, none is counted failed."""

from __future__ import annotations

import asyncio
import dataclasses

from presence.clients import POOL_SIZE, redis_from_url
from presence.clock import SystemClock
from presence.config import Settings
from presence.counters import ClusterCounters
from presence.domain import SubjectKind, SubjectRef
from presence.keys import Keys
from presence.metrics import Metrics
from presence.store.memory import MemoryStore
from presence.throttle import ActivityTracker
from presence.windows import ThrottleWindows
from presence.write_behind import OnlineWrites


async def test_more_concurrent_first_requests_than_pooled_connections_all_succeed(
    settings: Settings, redis_url: str
) -> None:
    redis = redis_from_url(redis_url)
    metrics = Metrics("w0")
    keys = Keys(settings.redis_prefix)
    counters = ClusterCounters(redis, keys, metrics)
    store = MemoryStore()
    tracker = ActivityTracker(
        windows=ThrottleWindows.from_settings(redis, keys, settings),
        store=store,
        clock=SystemClock(),
        settings=dataclasses.replace(settings, worker_id="w0"),
        metrics=metrics,
        counters=counters,
        online_writes=OnlineWrites(store, metrics, 0.25),
    )
    subjects = [SubjectRef(SubjectKind.USER, f"u{i}") for i in range(POOL_SIZE * 3)]
    try:
        outcomes = await asyncio.gather(*(tracker.record(s) for s in subjects))
        assert sum(o.won_window for o in outcomes) == len(subjects)
        assert metrics.redis_errors.labels(operation="activity")._value.get() == 0
    finally:
        await tracker.drain()
        await redis.aclose()
