"""Local delivery of an emit without a task per recipient.

python-socketio's ``AsyncManager.emit`` encodes a message once, then creates one asyncio task
per recipient socket and waits for all of them. Each task only puts the packet on that socket's
unbounded queue, which never waits, so the tasks buy nothing, and at 50 recipients they were a
tenth of the CPU a connection costs (the announcement of a member coming online goes to the
sockets of its 49 co-members). Here the packet goes on each queue in turn, and a socket that
cannot take it (closed meanwhile) costs only its own packet: the others still get theirs.

Views: an emit whose data is ``{VIEWS: {view: payload, ...}}`` gives each socket the payload of
its own view (:attr:`DirectDelivery.view_of`), encoded once per view. One message then serves
viewers who may see a subject's exact last seen and viewers who may not (SPEC §11): the queue
carries it once, and each worker picks per socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from engineio import packet as eio_packet
from socketio import packet
from socketio.async_manager import AsyncManager

log = logging.getLogger(__name__)

VIEWS = "$views"
# Every socket's view unless told otherwise; the view a payload without views is.
EXACT_VIEW = "exact"
# Sockets of users who do not share their own exact last seen.
RESERVED_VIEW = "reserved"


class DirectDelivery(AsyncManager):  # type: ignore[misc]
    # Which view a local socket gets (the realtime server knows its principal).
    view_of: Callable[[str], str] = staticmethod(lambda sid: EXACT_VIEW)

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        if callback is not None:  # every recipient needs its own packet (its own ack id)
            await super().emit(
                event,
                data,
                namespace,
                room=room,
                skip_sid=skip_sid,
                callback=callback,
                to=to,
                **kwargs,
            )
            return
        room = to or room
        if namespace not in self.rooms:
            return
        views: dict[str, Any] | None = None
        if isinstance(data, dict) and VIEWS in data:
            views = data[VIEWS]
        skipped = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        frames_of: dict[str, list[eio_packet.Packet]] = {}
        for sid, eio_sid in self.get_participants(namespace, room):  # a copy of the rooms
            if sid in skipped:
                continue
            view = EXACT_VIEW if views is None else self.view_of(sid)
            frames = frames_of.get(view)
            if frames is None:
                payload = data if views is None else views.get(view, views[EXACT_VIEW])
                frames = frames_of[view] = self._frames(event, payload, namespace)
            for frame in frames:
                try:
                    await self.server._send_eio_packet(eio_sid, frame)
                except Exception:  # closed meanwhile: the others still get theirs
                    log.debug("could not deliver to a socket", exc_info=True)
                    break

    def _frames(self, event: str, data: Any, namespace: str) -> list[eio_packet.Packet]:
        if isinstance(data, tuple):
            data = list(data)
        elif data is not None:
            data = [data]
        else:
            data = []
        encoded = self.server.packet_class(
            packet.EVENT, namespace=namespace, data=[event, *data]
        ).encode()
        return [
            eio_packet.Packet(eio_packet.MESSAGE, part)
            for part in (encoded if isinstance(encoded, list) else [encoded])
        ]
