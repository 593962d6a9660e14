"""Scenario 5: a consumer that stops reading and a connection flood past the per-worker limit:
memory stays bounded, everyone else is served, the excess is refused cleanly."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time

import aiohttp
import pytest
import socketio

from tests.fault.report import Row
from tests.fault.stack import Stack
from tests.fault.truth import accounts, wait_until
from tests.support.accounts import Account, conversation, register
from tests.support.sio import Listener

MAX_CONNECTIONS = 60


def ws_frame(text: str) -> bytes:
    """A masked websocket text frame, as a client must send it (RFC 6455 §5.3)."""
    payload = text.encode()
    mask = os.urandom(4)
    header = bytes([0x81])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    else:
        header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class SlowConsumer:
    """A Socket.IO client that authenticates and then never reads again (it keeps answering
    pings blindly, as a client whose read side is stuck would): the smallest receive buffer,
    so the worker's outbound queue is what fills."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.sock.sendall(ws_frame("40" + json.dumps({"token": token})))

    def pong(self) -> None:
        self.sock.sendall(ws_frame("3"))

    def close(self) -> None:
        self.sock.close()


async def flood(url: str, subject: Account, count: int) -> tuple[int, dict[str, int]]:
    """Open ``count`` sockets at once: (accepted, refusals by code)."""
    clients = [socketio.AsyncClient(reconnection=False) for _ in range(count)]
    errors: dict[int, object] = {}

    def recorder(index: int):  # type: ignore[no-untyped-def]
        async def on_error(data: object) -> None:
            errors[index] = data

        return on_error

    for index, client in enumerate(clients):
        client.on("connect_error", recorder(index))

    async def one(client: socketio.AsyncClient) -> bool:
        try:
            await client.connect(
                url, auth={"token": subject.token}, transports=["websocket"], wait_timeout=10
            )
        except socketio.exceptions.ConnectionError:
            return False
        return True

    outcomes = await asyncio.gather(*(one(c) for c in clients))
    refusals: dict[str, int] = {}
    for index, accepted in enumerate(outcomes):
        if not accepted:
            error = errors.get(index)
            code = error.get("code", "?") if isinstance(error, dict) else "no connect_error"
            refusals[code] = refusals.get(code, 0) + 1
    await asyncio.gather(*(c.disconnect() for c in clients if c.connected))
    for client in clients:
        http = getattr(client.eio, "http", None)
        if http is not None and not http.closed:
            await http.close()
    return sum(outcomes), refusals


@pytest.mark.scenario(5)
async def test_slow_consumer_and_connection_flood(stack: Stack, row: Row) -> None:
    row.done = (
        f"1 worker with PRESENCE_MAX_CONNECTIONS={MAX_CONNECTIONS}; a raw websocket client that"
        " authenticates, then never reads (2 KiB receive buffer, blind pongs) while 20 members"
        " of its conversation toggle their status; then 60 more sockets opened at once"
    )
    row.checked = (
        "the slow consumer is dropped; worker RSS growth bounded; a normal member keeps hearing"
        " every change and REST answers; excess sockets get connect_error server_full, the"
        " rest connect; the worker process is the same"
    )
    stack.settings["PRESENCE_MAX_CONNECTIONS"] = str(MAX_CONNECTIONS)
    worker = await stack.start_worker("w0")
    pid = worker.process.pid
    togglers = await accounts(worker.url, 20, "toggle")
    slow, normal = await register(worker.url, "slow"), await register(worker.url, "normal")
    await conversation(worker.url, normal, [slow, *togglers], "hot")
    listener = Listener("normal")
    await listener.connect(worker.url, auth={"token": normal.token})
    await listener.wait_for("presence:snapshot")
    clients = []
    for subject in togglers:
        client = Listener(subject.name)
        await client.connect(worker.url, auth={"token": subject.token})
        clients.append(client)
    consumer = SlowConsumer(worker.port, slow.token)
    await asyncio.sleep(1)
    rss_before = stack.rss_kib("w0")
    rss_peak = rss_before

    stop = asyncio.Event()

    async def toggle(client: Listener) -> None:
        status = "away"
        while not stop.is_set():
            await client.client.emit("presence:set", {"status": status})
            status = "online" if status == "away" else "away"
            await asyncio.sleep(0.15)

    togglers_running = [asyncio.create_task(toggle(c)) for c in clients]

    async def dropped() -> bool:
        nonlocal rss_peak
        consumer.pong()
        rss_peak = max(rss_peak, stack.rss_kib("w0"))
        return (
            await stack.metric(worker.url, "presence_socket_refusals_total", reason="slow_consumer")
            >= 1
        )

    was_dropped, dropped_s = await wait_until(dropped, timeout_s=30, interval_s=0.5)
    heard_then = len(listener.events("user:status"))
    await asyncio.sleep(2)
    heard_after = len(listener.events("user:status"))
    stop.set()
    await asyncio.gather(*togglers_running)
    consumer.close()
    # Bounded: the kernel send buffer is fixed (64 KiB), so the queue fills within seconds.
    assert was_dropped, "the consumer that stopped reading was not dropped within 30 s"
    row.measure(f"slow consumer dropped after {dropped_s:.1f} s of toggling")
    growth_mib = (rss_peak - rss_before) / 1024
    row.measure(f"worker RSS {rss_before / 1024:.0f} MiB, peak +{growth_mib:.1f} MiB")
    assert growth_mib < 64
    assert heard_after > heard_then, "the normal member stopped hearing changes"
    row.measure(
        f"normal member heard {heard_after} changes, {heard_after - heard_then} in the 2 s after"
    )

    flooder = await register(worker.url, "flooder")
    await asyncio.sleep(0.5)
    open_now = int(await stack.metric(worker.url, "presence_connections"))
    accepted, refusals = await flood(worker.url, flooder, 60)
    row.measure(
        f"{open_now} sockets open, 60 more at once: {accepted} accepted,"
        f" refusals {refusals} (limit {MAX_CONNECTIONS})"
    )
    assert accepted == MAX_CONNECTIONS - open_now
    assert refusals == {"server_full": 60 - accepted}
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.get(worker.url + "/api/users/me", headers=normal.bearer) as resp:
            assert resp.status == 200
        row.measure(
            f"REST answered in {1000 * (time.monotonic() - started):.0f} ms after the flood"
        )
    assert worker.process.pid == pid and worker.process.poll() is None
