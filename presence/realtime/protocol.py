"""Socket.IO hardening and the replies every part of the realtime server sends.

python-socketio accepts binary attachments, packets it cannot decode and 1 MB messages; a chat
client needs none of that. :class:`BoundedServer` drops such sockets at the packet level, before
any handler runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import orjson
import socketio
from socketio import packet

# Every event we accept is a few hundred bytes; Engine.IO's default is 1 MB.
MAX_MESSAGE_BYTES = 16 * 1024

# What python-socketio raises on a packet it cannot decode or dispatch: bad JSON, JSON nested
# past the recursion limit, an event whose data is not a list (``42null``), an empty event.
# Handlers themselves run as tasks, so their errors never arrive here.
_MALFORMED = (ValueError, RecursionError, TypeError, IndexError, KeyError, AttributeError)


class Refused(socketio.exceptions.ConnectionRefusedError):  # type: ignore[misc]
    """A refused handshake; the client's ``connect_error`` carries ``{code, message}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        # socket.io-client exposes ``message`` and ``data``; python clients get the whole dict.
        self.error_args = {
            "message": message,
            "code": code,
            "data": {"code": code, "message": message},
        }


class _Encoding:
    """How packets are written: by orjson (several times faster than the standard library on
    a 50-member snapshot); read as before, by the standard library, so a client's malformed
    packet is judged exactly as it always was."""

    @staticmethod
    def dumps(data: Any, **_: Any) -> str:
        return orjson.dumps(data).decode()

    loads = staticmethod(json.loads)


class TextPacket(packet.Packet):  # type: ignore[misc]
    """A packet never searched for binary attachments: they are refused on the way in
    (:class:`BoundedServer`) and never sent, and the search walked every record of every
    snapshot and announcement."""

    uses_binary_events = False
    json = _Encoding


class BoundedServer(socketio.AsyncServer):  # type: ignore[misc]
    """Refuses binary attachments and malformed packets by dropping the socket: one socket
    declaring many attachments could otherwise grow a worker by hundreds of MiB."""

    on_bad_packet: Callable[[str], None] = staticmethod(lambda reason: None)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if isinstance(data, bytes) or (isinstance(data, str) and data[:1] in ("5", "6")):
            self.on_bad_packet("binary")
            await self.eio.disconnect(eio_sid)
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except _MALFORMED:
            self.on_bad_packet("malformed")
            await self.eio.disconnect(eio_sid)

    async def _handle_event(self, eio_sid: str, namespace: str, id: Any, data: Any) -> None:
        # An event is ``[name, ...args]`` with a string name; anything else (``42null``, a list
        # as the name) would fail later inside a handler task, as an unretrieved exception.
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            self.on_bad_packet("malformed")
            await self.eio.disconnect(eio_sid)
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    async def reply(self, sid: str, event: str, data: dict[str, Any]) -> None:
        """To one socket of this worker: delivered here, never published for other workers
        to decode and drop."""
        await self.emit(event, data, to=sid, ignore_queue=True)

    async def error(self, sid: str, code: str, message: str) -> None:
        await self.reply(sid, "error", {"code": code, "message": message})


def quiet_logger(name: str, level: str) -> logging.Logger:
    # Engine.IO logs every packet at INFO; only warnings and errors are worth a line.
    logger = logging.getLogger(name)
    logger.setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return logger
