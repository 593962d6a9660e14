"""Websockets are accepted without per-message compression, even when the client offers it
(as browsers always do): two zlib streams per idle connection cost ~95 KiB each (bench B8)."""

from __future__ import annotations

from tests.conftest import ClusterFactory


async def test_a_websocket_offering_deflate_is_accepted_uncompressed(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(1)
    async with cluster[0].client.ws_connect(
        "/socket.io/?EIO=4&transport=websocket", compress=15
    ) as ws:
        opening = await ws.receive_str()
        assert opening.startswith("0{")  # Engine.IO's open packet: the handshake succeeded
        assert ws.compress == 0
