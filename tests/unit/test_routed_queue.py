"""The routed message queue's bookkeeping and addressing, on a recording route directory (the
delivery itself runs against real Redis and real workers in tests/e2e/test_fanout.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any, cast

import pytest

from presence.metrics import Metrics
from presence.realtime.routed import RoutedRedisManager, route_of
from presence.redis_url import parse_redis_url
from presence.routes import RoomRoutes
from tests.support.waiting import until


class RecordingRoutes:
    worker_id = "w1"

    def __init__(self) -> None:
        self.applied: list[dict[str, bool]] = []
        self.reads: list[list[str]] = []
        self.table: dict[str, set[str]] = {}
        self.failures = 0

    def channel(self, worker_id: str) -> str:
        return f"channel:{worker_id}"

    async def apply(self, changes: Mapping[str, bool]) -> None:
        await asyncio.sleep(0)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Redis away")
        self.applied.append(dict(changes))

    async def workers_for(self, rooms: Iterable[str]) -> set[str]:
        wanted = list(rooms)
        self.reads.append(wanted)
        return set().union(*(self.table.get(r, set()) for r in wanted))

    async def live_workers(self) -> set[str]:
        return {"w1", "w2", "w3"}

    async def forget(self, worker_id: str) -> int:
        return 0


@pytest.fixture
def routes() -> RecordingRoutes:
    return RecordingRoutes()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics("w1")


@pytest.fixture
def manager(routes: RecordingRoutes, metrics: Metrics) -> RoutedRedisManager:
    queue = RoutedRedisManager(
        parse_redis_url("redis://localhost:6379/0"),
        cast(RoomRoutes, routes),
        logging.getLogger("test"),
        metrics,
    )
    return queue


def connect(manager: RoutedRedisManager, sid: str) -> None:
    """What python-socketio's pre_connect and connect do with a new socket."""
    manager.basic_enter_room(sid, "/", None, eio_sid=f"eio-{sid}")
    manager.basic_enter_room(sid, "/", sid, eio_sid=f"eio-{sid}")


async def test_a_room_is_routed_by_its_first_socket_and_unrouted_by_its_last(
    manager: RoutedRedisManager, routes: RecordingRoutes
) -> None:
    connect(manager, "s1")
    connect(manager, "s2")
    await manager.enter_room("s1", "/", "conversation:c")
    # Returned only once the room (and the socket's own room, in the same batch) was written.
    assert routes.applied == [{route_of("/", "s1"): True, route_of("/", "conversation:c"): True}]
    await manager.enter_room("s2", "/", "conversation:c")
    # The room was routed already: only the second socket's own room is written.
    assert routes.applied[-1] == {route_of("/", "s2"): True}
    await manager.leave_room("s1", "/", "conversation:c")
    await manager.leave_room("s2", "/", "conversation:c")
    await manager.flush()
    assert routes.applied[-1] == {route_of("/", "conversation:c"): False}
    manager.basic_disconnect("s1", "/")
    await manager.flush()
    assert routes.applied[-1] == {route_of("/", "s1"): False}


async def test_a_socket_that_enters_no_room_costs_redis_nothing(
    manager: RoutedRedisManager, routes: RecordingRoutes
) -> None:
    """An unauthenticated socket (refused, or never sending credentials)."""
    connect(manager, "s1")
    manager.basic_disconnect("s1", "/")
    await manager.flush()
    await manager.resync()
    assert routes.applied == []


async def test_a_failed_write_is_kept_and_written_next_in_order(
    manager: RoutedRedisManager, routes: RecordingRoutes
) -> None:
    connect(manager, "s1")
    await manager.enter_room("s1", "/", "first")
    routes.failures = 1
    with pytest.raises(ConnectionError):
        await manager.enter_room("s1", "/", "room")
    await manager.leave_room("s1", "/", "room")  # newer than the failed enter: it wins
    await manager.flush()
    assert routes.applied[-1] == {route_of("/", "room"): False}


async def test_a_write_that_failed_in_the_background_is_retried_and_counted(
    manager: RoutedRedisManager, routes: RecordingRoutes, metrics: Metrics
) -> None:
    connect(manager, "s1")
    await manager.enter_room("s1", "/", "room")
    routes.failures = 1
    await manager.leave_room("s1", "/", "room")  # written in the background: fails once
    await until(lambda: routes.applied[-1] == {route_of("/", "room"): False}, 5)
    assert (
        metrics.registry.get_sample_value(
            "presence_redis_errors_total", {"operation": "route_write"}
        )
        == 1
    )


async def test_resync_routes_every_local_room_again(
    manager: RoutedRedisManager, routes: RecordingRoutes
) -> None:
    connect(manager, "s1")
    await manager.enter_room("s1", "/", "room")
    routes.applied.clear()
    await manager.resync()
    assert routes.applied == [{route_of("/", "s1"): True, route_of("/", "room"): True}]


async def test_a_message_goes_once_to_each_other_worker_routed_for_any_of_its_rooms(
    manager: RoutedRedisManager, routes: RecordingRoutes, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, str]] = []

    async def send(channel: str, message: str, *, probe: bool = False) -> bool:
        sent.append((channel, message))
        return True

    monkeypatch.setattr(manager, "send", send)
    routes.table = {
        route_of("/", "conversation:a"): {"w1", "w2"},
        route_of("/", "conversation:b"): {"w2", "w3"},
        route_of("/", "user:u"): {"w3"},
    }
    rooms = ["conversation:a", "conversation:b", "user:u", "user:nobody"]
    message: dict[str, Any] = {"method": "emit", "room": rooms, "namespace": "/", "host_id": "w1"}
    await manager._publish(message)
    assert len(routes.reads) == 1  # one read of the union, however many rooms
    assert sorted(channel for channel, _ in sent) == ["channel:w2", "channel:w3"]


async def test_replies_to_local_sockets_publish_nothing_and_read_nothing(
    manager: RoutedRedisManager, routes: RecordingRoutes
) -> None:
    connect(manager, "s1")
    message = {"method": "emit", "room": "s1", "namespace": "/", "host_id": "w1"}
    assert await manager._addressees(message) == set()
    assert routes.reads == []


async def test_addressing_of_the_other_queue_messages(
    manager: RoutedRedisManager, routes: RecordingRoutes
) -> None:
    routes.table = {route_of("/", "remote-sid"): {"w2"}, route_of("/", "room"): {"w3"}}
    everyone = {"method": "emit", "room": None, "namespace": "/"}
    assert await manager._addressees(everyone) == {"w1", "w2", "w3"}
    for method in ("disconnect", "enter_room", "leave_room"):
        message = {"method": method, "sid": "remote-sid", "namespace": "/", "room": "room"}
        assert await manager._addressees(message) == {"w2"}
    assert await manager._addressees({"method": "close_room", "room": "room"}) == {"w3"}
    assert await manager._addressees({"method": "callback", "host_id": "w9"}) == {"w9"}
