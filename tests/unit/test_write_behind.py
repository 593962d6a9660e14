"""The write-behind queue of online flags and lastSeen: one bulk per flush, ordered per subject,
nothing lost to a failing database or a cancelled flush, drained at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from presence.domain import Role, SubjectKind, SubjectRef, from_epoch
from presence.metrics import Metrics
from presence.store.base import OnlineChange, StoreError
from presence.store.memory import MemoryStore
from presence.write_behind import OnlineWrites, merged
from tests.support.waiting import until

T0 = from_epoch(1_800_000_000.0)


class RecordingStore(MemoryStore):
    """Counts bulks; fails while ``down``; can hold a bulk until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.bulks: list[list[OnlineChange]] = []
        self.down = False
        self.release: asyncio.Event | None = None

    async def set_online_many(self, changes: Sequence[OnlineChange]) -> int:
        if self.release is not None:
            await self.release.wait()
        if self.down:
            raise StoreError("database down")
        self.bulks.append(list(changes))
        return await super().set_online_many(changes)


async def _users(store: MemoryStore, count: int) -> list[SubjectRef]:
    found = []
    for i in range(count):
        user = await store.create_user(
            username=f"u{i}", email=f"u{i}@example.test", password_hash="x", role=Role.USER, now=T0
        )
        found.append(SubjectRef(SubjectKind.USER, user.id))
    return found


def failures(metrics: Metrics) -> float:
    value: float = metrics.mongo_errors.labels(operation="write_behind")._value.get()
    return value


def test_a_newer_change_keeps_the_newer_flag_and_the_later_last_seen() -> None:
    subject = SubjectRef(SubjectKind.USER, "a")
    offline = OnlineChange(subject, False, T0 + timedelta(seconds=5))
    online = OnlineChange(subject, True, None)
    assert merged(offline, online) == OnlineChange(subject, True, T0 + timedelta(seconds=5))
    assert merged(online, OnlineChange(subject, False, T0)) == OnlineChange(subject, False, T0)
    assert merged(offline, OnlineChange(subject, False, T0)).last_seen == offline.last_seen


async def test_one_bulk_per_flush_with_one_change_per_subject() -> None:
    store, metrics = RecordingStore(), Metrics("w")
    a, b, c = await _users(store, 3)
    writes = OnlineWrites(store, metrics, 0.25)
    writes.put(a, True)
    writes.put(b, True)
    writes.put(a, False, last_seen=T0)
    writes.put(c, True)
    writes.put(a, True)
    assert await writes.flush() == 3
    assert len(store.bulks) == 1
    assert {ch.subject: (ch.online, ch.last_seen) for ch in store.bulks[0]} == {
        a: (True, T0),
        b: (True, None),
        c: (True, None),
    }
    stored = await store.get_presence([a, b, c])
    assert (stored[a].is_online, stored[a].last_seen) == (True, T0)
    assert await writes.flush() == 0 and len(store.bulks) == 1  # nothing queued: no bulk
    assert metrics.write_behind_written._value.get() == 3


async def test_a_failed_bulk_is_kept_under_the_changes_queued_meanwhile() -> None:
    store, metrics = RecordingStore(), Metrics("w")
    a, b = await _users(store, 2)
    writes = OnlineWrites(store, metrics, 0.25)
    writes.put(a, False, last_seen=T0 + timedelta(seconds=3))
    writes.put(b, False, last_seen=T0)
    store.down = True
    store.release = asyncio.Event()
    flushing = asyncio.create_task(writes.flush())
    await asyncio.sleep(0.01)
    writes.put(a, True)  # while the failing bulk is in flight: the newer flag must win
    store.release.set()
    with pytest.raises(StoreError):
        await flushing
    assert failures(metrics) == 1
    assert writes.queued(a) == OnlineChange(a, True, T0 + timedelta(seconds=3))
    assert writes.queued(b) == OnlineChange(b, False, T0)
    store.down, store.release = False, None
    assert await writes.flush() == 2
    stored = await store.get_presence([a, b])
    assert (stored[a].is_online, stored[a].last_seen) == (True, T0 + timedelta(seconds=3))
    assert (stored[b].is_online, stored[b].last_seen) == (False, T0)


async def test_a_flush_in_flight_is_never_overtaken_by_the_next() -> None:
    store, metrics = RecordingStore(), Metrics("w")
    (a,) = await _users(store, 1)
    writes = OnlineWrites(store, metrics, 0.25)
    writes.put(a, True)
    store.release = asyncio.Event()
    first = asyncio.create_task(writes.flush())
    await asyncio.sleep(0.01)
    assert writes.queued(a) == OnlineChange(a, True) and len(writes) == 1  # in flight
    writes.put(a, False, last_seen=T0)
    assert writes.queued(a) == OnlineChange(a, False, T0) and len(writes) == 1
    second = asyncio.create_task(writes.flush())
    await asyncio.sleep(0.01)
    store.release.set()
    await asyncio.gather(first, second)
    assert [[ch.online for ch in bulk] for bulk in store.bulks] == [[True], [False]]
    assert not (await store.get_presence([a]))[a].is_online


async def test_a_cancelled_flush_loses_nothing() -> None:
    store, metrics = RecordingStore(), Metrics("w")
    (a,) = await _users(store, 1)
    writes = OnlineWrites(store, metrics, 0.25)
    writes.put(a, False, last_seen=T0)
    store.release = asyncio.Event()
    flushing = asyncio.create_task(writes.flush())
    await asyncio.sleep(0.01)
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    assert writes.queued(a) == OnlineChange(a, False, T0)


async def test_the_loop_retries_with_back_off_until_the_database_answers() -> None:
    store, metrics = RecordingStore(), Metrics("w")
    (a,) = await _users(store, 1)
    writes = OnlineWrites(store, metrics, 0.01)
    store.down = True
    writes.put(a, False, last_seen=T0)
    loop = asyncio.create_task(writes.run())
    try:
        await until(lambda: failures(metrics) >= 3, 5, interval_s=0.005, what="3 failures")
        assert len(writes) == 1
        store.down = False
        await until(lambda: len(writes) == 0, 5, interval_s=0.005, what="the write")
    finally:
        loop.cancel()
    assert (await store.get_presence([a]))[a].last_seen == T0
    # 0.01, 0.02, 0.04 s between the failed attempts: not one attempt per tick.
    assert failures(metrics) <= 5


async def test_drain_writes_what_is_queued_and_gives_up_only_at_its_deadline() -> None:
    store, metrics = RecordingStore(), Metrics("w")
    a, b = await _users(store, 2)
    writes = OnlineWrites(store, metrics, 10)
    writes.put(a, True)
    await writes.drain()
    assert (await store.get_presence([a]))[a].is_online
    store.down = True
    writes.put(b, True)
    started = asyncio.get_running_loop().time()
    await writes.drain(timeout_s=0.5)
    assert 0.4 <= asyncio.get_running_loop().time() - started < 2
    assert writes.queued(b) is not None  # still queued, never dropped


async def test_written_changes_are_settled_and_a_failed_settle_only_counts() -> None:
    store, metrics = RecordingStore(), Metrics("w")
    a, b = await _users(store, 2)
    settled: list[list[OnlineChange]] = []
    fail = False

    async def settle(changes: Sequence[OnlineChange]) -> None:
        if fail:
            raise RedisConnectionError("redis down")
        settled.append(list(changes))

    writes = OnlineWrites(store, metrics, 0.25, settle=settle)
    writes.put(a, False, last_seen=T0)
    await writes.flush()
    assert settled == [[OnlineChange(a, False, T0)]]
    fail = True
    writes.put(b, False, last_seen=T0)
    assert await writes.flush() == 1
    assert metrics.redis_errors.labels(operation="write_behind_settle")._value.get() == 1
    assert len(writes) == 0


async def test_a_flag_amends_only_a_change_still_on_its_way() -> None:
    store, metrics = RecordingStore(), Metrics("w")
    a, b = await _users(store, 2)
    writes = OnlineWrites(store, metrics, 0.25)
    assert not writes.amend(a, True)  # nothing queued: the caller writes it with its own write
    assert len(writes) == 0
    writes.put(b, False, last_seen=T0)
    assert writes.amend(b, True)
    assert writes.queued(b) == OnlineChange(b, True, T0)
    store.release = asyncio.Event()
    flushing = asyncio.create_task(writes.flush())
    await asyncio.sleep(0.01)
    assert writes.amend(b, False)  # in flight: queued after it
    store.release.set()
    await flushing
    assert writes.queued(b) == OnlineChange(b, False)
