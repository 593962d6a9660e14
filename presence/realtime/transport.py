"""The websocket transport without per-message compression.

Browsers and Node clients offer ``permessage-deflate`` on every connection, and aiohttp accepts
it by default: each connection then keeps two zlib streams, about 95 KiB per idle connection
(measured by benchmark B8: ~133 KiB per connection with it, ~38 KiB without). Presence messages
are a few hundred bytes, below any useful compression threshold, so the memory buys nothing.

The kernel send buffer is fixed at :data:`SEND_BUFFER_BYTES` instead of autotuned (up to 4 MiB
per socket on Linux): a client that stops reading then fills it within seconds, its packets
queue where the slow-consumer check sees them, and it is dropped, instead of pinning megabytes
of kernel memory per connection. 64 KiB still carries a full presence snapshot at once.
"""

from __future__ import annotations

import socket
from typing import Any

from aiohttp.web import WebSocketResponse
from engineio import packet
from engineio.async_drivers.aiohttp import WebSocket

# What a malformed Engine.IO packet raises while being decoded (empty, a non-digit type,
# JSON nested past the recursion limit); a type past the known ones is refused too.
_DECODE_ERRORS = (ValueError, RecursionError, IndexError, TypeError)

SEND_BUFFER_BYTES = 64 * 1024


class UncompressedWebSocket(WebSocket):  # type: ignore[misc]
    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        raw = request.transport.get_extra_info("socket") if request.transport else None
        if raw is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock

    async def wait(self) -> Any:
        """The next frame, checked before Engine.IO decodes it: Engine.IO decodes outside its
        error handling, so a malformed frame would end the handler without closing the socket
        (its writer task left waiting, a traceback logged). Reported as a closed connection
        instead, which takes Engine.IO's normal close path."""
        data = await super().wait()
        try:
            decoded = packet.Packet(encoded_packet=data)
            if not 0 <= decoded.packet_type < len(packet.packet_names):
                raise ValueError("unknown Engine.IO packet type")
        except _DECODE_ERRORS:
            report = getattr(self.server, "on_bad_frame", None)
            if report is not None:
                report()
            raise OSError("malformed Engine.IO packet") from None
        return data


def without_compression(eio: Any) -> None:
    """Make this Engine.IO server (only this one) accept websockets without compression."""
    eio._async = {**eio._async, "websocket": UncompressedWebSocket}
