"""Local delivery without a task per recipient: each socket of the rooms gets the packet once,
skipped sockets get nothing, and a socket that cannot take its packet costs only its own."""

from __future__ import annotations

from typing import Any

from engineio import packet as eio_packet
from socketio import packet

from presence.realtime.delivery import DirectDelivery


class RecordingServer:
    """What the manager needs of a python-socketio server: its packet class and the send."""

    packet_class = packet.Packet

    def __init__(self, closed: set[str]) -> None:
        self.closed = closed
        self.sent: list[tuple[str, str]] = []

    async def _send_eio_packet(self, eio_sid: str, pkt: eio_packet.Packet) -> None:
        if eio_sid in self.closed:
            raise RuntimeError("socket is closed")
        self.sent.append((eio_sid, pkt.data))


def _manager(closed: set[str]) -> tuple[DirectDelivery, RecordingServer]:
    manager = DirectDelivery()
    server = RecordingServer(closed)
    manager.set_server(server)
    manager.initialize()
    for sid, rooms in {"a": ["r1", "r2"], "b": ["r1"], "c": ["r2"], "d": ["r3"]}.items():
        manager.basic_enter_room(sid, "/", None, eio_sid=f"e{sid}")
        for room in rooms:
            manager.basic_enter_room(sid, "/", room, eio_sid=f"e{sid}")
    return manager, server


async def test_a_multi_room_emit_reaches_each_socket_once_and_skips_who_it_must() -> None:
    manager, server = _manager(closed=set())
    await manager.emit("user:status", {"userId": "u"}, "/", room=["r1", "r2"], skip_sid=["c"])
    assert sorted(eio for eio, _ in server.sent) == ["ea", "eb"]
    assert {data for _, data in server.sent} == {'2["user:status",{"userId":"u"}]'}


async def test_a_closed_socket_does_not_stop_the_others() -> None:
    manager, server = _manager(closed={"ea"})
    await manager.emit("user:status", ("x", 1), "/", to="r1")
    assert [eio for eio, _ in server.sent] == ["eb"]
    await manager.emit("user:status", None, "/", room="r3")
    assert server.sent[-1] == ("ed", '2["user:status"]')


async def test_an_emit_with_a_callback_goes_the_librarys_way() -> None:
    manager, server = _manager(closed=set())
    calls: list[Any] = []
    sent: list[Any] = []

    async def send_packet(eio_sid: str, pkt: packet.Packet) -> None:
        sent.append((eio_sid, pkt.id))

    server._send_packet = send_packet  # type: ignore[attr-defined]
    await manager.emit("ask", {}, "/", room="r3", callback=calls.append)
    assert [eio for eio, _ in sent] == ["ed"] and sent[0][1] is not None
