"""A client that stops reading cannot grow a worker's memory without bound: once its outbound
queue passes the limit, the socket is dropped."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp

from presence.app import REALTIME
from presence.realtime.server import MAX_QUEUED_PACKETS
from tests.conftest import ClusterFactory


async def test_a_consumer_that_stops_reading_is_dropped(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(1)
    token, _ = await cluster.register("slow")
    realtime = cluster[0].app[REALTIME]
    url = cluster[0].client.make_url("/socket.io/?EIO=4&transport=websocket")

    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url)
    assert (await ws.receive_str()).startswith("0")  # Engine.IO open
    await ws.send_str("40" + json.dumps({"token": token}))
    assert (await ws.receive_str()).startswith("40")  # Socket.IO connect accepted
    # From here on the client reads nothing, and its socket buffers are as small as possible.
    transport = ws._response.connection.transport  # type: ignore[union-attr]
    assert transport is not None
    raw = transport.get_extra_info("socket")
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert realtime.connection_count == 1
    sid = next(iter(realtime._local))

    payload = {"pad": "x" * 1024}
    for _ in range(20 * MAX_QUEUED_PACKETS):
        if realtime.connection_count == 0:
            break
        await realtime.sio.emit("user:status", payload, to=sid)
        await asyncio.sleep(0)
    for _ in range(100):
        if realtime.connection_count == 0:
            break
        await asyncio.sleep(0.1)
    assert realtime.connection_count == 0
    refusals = cluster[0].c.metrics.socket_refusals.labels(reason="slow_consumer")._value.get()
    assert refusals == 1
    transport.abort()  # no close handshake: the client never reads again
    await session.close()
