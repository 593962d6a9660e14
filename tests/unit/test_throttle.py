"""The activity tracker's decisions, on in-process Redis (fakeredis) and the memory store, with
time moved by hand (the tracker's clock and the time fakeredis expires keys by, together)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import fakeredis
import pytest

from presence.clock import Clock
from presence.config import load_settings
from presence.counters import ClusterCounters
from presence.domain import Role, SubjectKind, SubjectRef, from_epoch
from presence.keys import Keys
from presence.lua import ACTIVITY
from presence.metrics import Metrics
from presence.store.base import StoreError
from presence.store.memory import MemoryStore
from presence.throttle import ActivityTracker
from presence.windows import ThrottleWindows
from presence.write_behind import OnlineWrites
from tests.support.fakes import FakeClock, TimeTravel


class FlakyStore(MemoryStore):
    """A memory store whose activity writes fail while ``down`` is set."""

    down = False
    writes = 0
    attempts = 0

    async def record_activity(
        self, subject: SubjectRef, at: datetime, *, mark_online: bool
    ) -> bool:
        self.attempts += 1
        if self.down:
            raise StoreError("database down")
        self.writes += 1
        return await super().record_activity(subject, at, mark_online=mark_online)


@dataclasses.dataclass
class Rig:
    tracker: ActivityTracker
    store: FlakyStore
    counters: ClusterCounters
    metrics: Metrics
    subject: SubjectRef
    redis: fakeredis.FakeAsyncRedis
    time: TimeTravel | None = None

    def advance(self, seconds: float) -> None:
        assert self.time is not None
        self.time.advance(seconds)


async def make_rig(clock: Clock, time: TimeTravel | None = None, **overrides: Any) -> Rig:
    settings = dataclasses.replace(load_settings({}), **overrides)
    redis = fakeredis.FakeAsyncRedis()
    store = FlakyStore()
    user = await store.create_user(
        username="ann",
        email="ann@example.test",
        password_hash="x",
        role=Role.USER,
        now=from_epoch(clock.now()),
    )
    metrics = Metrics("w0")
    keys = Keys("t:")
    counters = ClusterCounters(redis, keys, metrics)
    tracker = ActivityTracker(
        windows=ThrottleWindows.from_settings(redis, keys, settings),
        store=store,
        clock=clock,
        settings=settings,
        metrics=metrics,
        counters=counters,
        online_writes=OnlineWrites(store, metrics, 0.25),
    )
    subject = SubjectRef(SubjectKind.USER, user.id)
    return Rig(tracker, store, counters, metrics, subject, redis, time)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    time = TimeTravel()
    try:
        r = await make_rig(time.clock, time, throttle_interval_s=0.3, offline_threshold_s=1.0)
        yield r
        await r.tracker.drain()
        await r.redis.aclose()
    finally:
        time.stop()


async def test_first_activity_writes_and_the_rest_of_the_window_skips_redis(rig: Rig) -> None:
    first = await rig.tracker.record(rig.subject)
    assert first.won_window
    assert first.became_online
    for _ in range(100):
        outcome = await rig.tracker.record(rig.subject)
        assert not outcome.won_window
    await rig.tracker.drain()
    snapshot = await rig.counters.flush_and_read(0)
    assert (snapshot.total_requests, snapshot.throttled_requests) == (101, 100)
    assert snapshot.successful_updates == 1
    assert rig.store.writes == 1
    # The 100 throttled calls never reached Redis: the local cache answered them.
    assert rig.metrics.local_cache_hits._value.get() == 100


async def test_concurrent_first_requests_of_a_subject_ask_redis_once(rig: Rig) -> None:
    await rig.redis.script_load(ACTIVITY)  # so that each call is exactly one EVALSHA
    calls = 0
    original = rig.redis.evalsha
    answer = asyncio.Event()  # the round trip is in flight until the others have arrived

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        await answer.wait()
        return await original(*args, **kwargs)

    rig.redis.evalsha = counted  # type: ignore[method-assign]
    requests = [asyncio.create_task(rig.tracker.record(rig.subject)) for _ in range(20)]
    await asyncio.sleep(0)  # one turn of the loop: every request runs up to where it waits
    assert calls == 1
    answer.set()
    outcomes = await asyncio.gather(*requests)
    assert calls == 1
    assert sum(o.won_window for o in outcomes) == 1
    assert sum(o.became_online for o in outcomes) == 1
    await rig.tracker.drain()
    snapshot = await rig.counters.flush_and_read(0)
    assert (snapshot.total_requests, snapshot.throttled_requests) == (20, 19)


async def test_the_next_window_writes_again(rig: Rig) -> None:
    await rig.tracker.record(rig.subject)
    rig.advance(0.35)
    again = await rig.tracker.record(rig.subject)
    assert again.won_window
    assert not again.became_online  # still fresh: no transition
    await rig.tracker.drain()
    assert rig.store.writes == 2


async def test_a_failed_write_shortens_the_window_so_the_next_activity_retries(
    rig: Rig,
) -> None:
    rig.store.down = True
    await rig.tracker.record(rig.subject)
    await rig.tracker.drain()
    left_ms = await rig.redis.pttl(Keys("t:").throttle(rig.subject))
    assert 0 < left_ms <= 300  # the backoff: the window (0.3 s here) when shorter than 1 s
    rig.store.down = False
    rig.advance(0.35)
    retried = await rig.tracker.record(rig.subject)
    assert retried.won_window
    await rig.tracker.drain()
    snapshot = await rig.counters.flush_and_read(0)
    assert (snapshot.failed_updates, snapshot.successful_updates) == (1, 1)
    assert snapshot.total_requests == 2
    assert rig.store.writes == 1


async def test_a_failing_database_sees_one_attempt_per_subject_per_backoff() -> None:
    time = TimeTravel()
    r = await make_rig(time.clock, time, throttle_interval_s=60.0)
    try:
        r.store.down = True
        for _ in range(50):
            await r.tracker.record(r.subject)
            await asyncio.sleep(0)  # let each write attempt run
        await r.tracker.drain()
        assert r.store.attempts == 1
        left_ms = await r.redis.pttl(Keys("t:").throttle(r.subject))
        assert 0 < left_ms <= 1000  # cut from 60 s to the 1 s backoff
        r.advance(1.05)
        r.store.down = False
        assert (await r.tracker.record(r.subject)).won_window
        await r.tracker.drain()
        assert (r.store.attempts, r.store.writes) == (2, 1)
    finally:
        await r.redis.aclose()
        time.stop()


async def test_a_subject_quiet_past_the_threshold_comes_back_online(rig: Rig) -> None:
    assert (await rig.tracker.record(rig.subject)).became_online
    assert not (await rig.tracker.record(rig.subject)).became_online
    rig.advance(1.1)
    assert (await rig.tracker.record(rig.subject)).became_online


async def test_precise_last_activity_reaches_redis_on_flush(rig: Rig) -> None:
    await rig.tracker.record(rig.subject)
    rig.advance(0.05)
    await rig.tracker.record(rig.subject)  # a cache hit: only local until the flush
    before = await rig.redis.zscore(
        Keys("t:").bucket(rig.subject.member).last_activity, rig.subject.member
    )
    await rig.tracker.flush()
    after = await rig.redis.zscore(
        Keys("t:").bucket(rig.subject.member).last_activity, rig.subject.member
    )
    assert before is not None
    assert after is not None
    assert abs(after - before - 50) <= 1  # ms, rounded


async def test_cache_cleanup_drops_entries_older_than_the_max_age() -> None:
    clock = FakeClock()
    r = await make_rig(clock, cache_max_age_s=600, throttle_interval_s=60)
    await r.tracker.record(r.subject)
    assert r.tracker.cache_size == 1
    clock.advance(599)
    assert r.tracker.cleanup_cache() == 0
    clock.advance(2)
    assert r.tracker.cleanup_cache() == 1
    assert r.tracker.cache_size == 0
    await r.tracker.drain()
    await r.redis.aclose()


async def test_last_activity_of_many_members_only_moves_forward() -> None:
    """More members than one ZADD of the script takes (a thousand arguments): every one is
    raised, none is lowered, a new one is added."""
    redis = fakeredis.FakeAsyncRedis()
    keys = Keys("t:")
    windows = ThrottleWindows(redis, keys, interval_s=60, offline_threshold_s=300)
    members = [f"u:{i:04d}" for i in range(1200)]
    await windows.raise_last_activity({m: 1_000.0 for m in members})
    await windows.raise_last_activity(
        {m: (999.0 if i % 2 else 1_001.0) for i, m in enumerate(members)} | {"u:new": 5.0}
    )
    key = keys.bucket("").last_activity
    scores = {m: await redis.zscore(key, m) for m in [*members, "u:new"]}
    assert await redis.zcard(key) == 1201
    assert scores["u:new"] == 5_000
    assert all(scores[m] == (1_000_000 if i % 2 else 1_001_000) for i, m in enumerate(members))


async def test_an_activity_inside_a_known_window_is_counted_without_awaiting(rig: Rig) -> None:
    assert not rig.tracker.hit(rig.subject)  # no window known yet: the caller asks Redis
    await rig.tracker.record(rig.subject)
    assert all(rig.tracker.hit(rig.subject) for _ in range(5))
    rig.advance(0.31)  # the window ended: Redis decides again
    assert not rig.tracker.hit(rig.subject)
    await rig.tracker.drain()
    snapshot = await rig.counters.flush_and_read(0)
    # The refused hits counted nothing: the activity they stood for is counted by record().
    assert (snapshot.total_requests, snapshot.throttled_requests) == (6, 5)
