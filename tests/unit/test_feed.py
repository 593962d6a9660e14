"""The change feed's policy on fakeredis: only public transitions, in order, nothing lost while
Redis is away, pages after a cursor, and a read that waits for news."""

from __future__ import annotations

import asyncio
import time

import fakeredis
import pytest

from presence.domain import (
    InvalidInput,
    PresenceRecord,
    Status,
    StatusChange,
    SubjectKind,
    SubjectRef,
)
from presence.feed import EventFeed
from presence.keys import Keys
from presence.metrics import Metrics
from tests.support.fakes import FakeClock


class WallClock(FakeClock):
    """A fixed epoch, but a real monotonic clock: the read's wait is really waited."""

    def monotonic(self) -> float:
        return time.monotonic()


def change(subject_id: str, status: Status, *, public_changed: bool = True) -> StatusChange:
    record = PresenceRecord(
        subject=SubjectRef(SubjectKind.USER, subject_id),
        username=subject_id,
        is_online=status is not Status.OFFLINE,
        status=status,
        last_active_at=None,
        last_seen=None,
    )
    return StatusChange(public=record, own=record, public_changed=public_changed)


def feed_on(server: fakeredis.FakeServer, wait_s: float = 0.0, maxlen: int = 1000) -> EventFeed:
    redis = fakeredis.FakeAsyncRedis(server=server)
    return EventFeed(redis, Keys("t:"), WallClock(), Metrics("w"), maxlen=maxlen, wait_s=wait_s)


async def test_public_transitions_only_in_order_with_a_cursor() -> None:
    feed = feed_on(fakeredis.FakeServer())
    await feed.on_change(change("a", Status.ONLINE))
    await feed.on_change(change("a", Status.ONLINE, public_changed=False))  # own view only
    await feed.on_change(change("b", Status.DND))
    await feed.on_change(change("a", Status.OFFLINE))
    page = await feed.read(None, 2)
    assert [(e["subjectId"], e["status"], e["isOnline"]) for e in page.events] == [
        ("a", "online", True),
        ("b", "dnd", True),
    ]
    assert page.events[0]["isAnonymous"] is False and page.events[0]["at"].endswith("Z")
    rest = await feed.read(page.next, 10)
    assert [(e["subjectId"], e["status"]) for e in rest.events] == [("a", "offline")]
    empty = await feed.read(rest.next, 10)
    assert (empty.events, empty.next) == ([], rest.next)


async def test_what_redis_refused_is_appended_in_order_once_it_answers() -> None:
    server = fakeredis.FakeServer()
    feed = feed_on(server)
    await feed.on_change(change("a", Status.ONLINE))
    server.connected = False
    await feed.on_change(change("b", Status.ONLINE))
    await feed.on_change(change("a", Status.OFFLINE))
    assert feed.waiting == 2
    server.connected = True
    await feed.flush()
    assert feed.waiting == 0
    page = await feed.read(None, 10)
    assert [(e["subjectId"], e["status"]) for e in page.events] == [
        ("a", "online"),
        ("b", "online"),
        ("a", "offline"),
    ]


async def test_a_read_waits_for_news_and_wakes_when_it_comes() -> None:
    server = fakeredis.FakeServer()
    reader, writer = feed_on(server, wait_s=5.0), feed_on(server)
    started = time.monotonic()
    waiting = asyncio.create_task(reader.read("0-0", 10))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await writer.on_change(change("a", Status.AWAY))  # appended by another worker
    page = await waiting
    assert [e["status"] for e in page.events] == ["away"]
    assert time.monotonic() - started < 2.0
    quiet = feed_on(server, wait_s=0.3)
    started = time.monotonic()
    assert (await quiet.read(page.next, 10)).events == []
    assert 0.25 <= time.monotonic() - started < 2.0


async def test_the_stream_is_capped_and_bad_cursors_are_refused() -> None:
    feed = feed_on(fakeredis.FakeServer(), maxlen=10)
    for i in range(300):
        await feed.on_change(change(f"s{i}", Status.ONLINE))
    kept = (await feed.read(None, 1000)).events
    assert 10 <= len(kept) < 300 and kept[-1]["subjectId"] == "s299"
    for cursor, code in (
        ("x", "invalid_cursor"),
        ("1-2-3", "invalid_cursor"),
        ("", "invalid_cursor"),
    ):
        with pytest.raises(InvalidInput) as refused:
            await feed.read(cursor, 10)
        assert refused.value.code == code
    for limit in (0, 1001):
        with pytest.raises(InvalidInput) as refused:
            await feed.read(None, limit)
        assert refused.value.code == "invalid_limit"
