"""Hostile Socket.IO clients: refused credentials, impersonation attempts, rate limits and
malformed events never change anyone's presence and never take a worker down."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import socketio
from pymongo import AsyncMongoClient

from tests.e2e.conftest import WorkersFactory
from tests.support.accounts import Account, call, conversation, register
from tests.support.sio import Listener

TIMERS = {
    "offline_grace_s": "1",
    "auth_deadline_s": "1",
    "ping_interval_s": "2",
    "auth_failures_per_address": "10",
}


async def refused(url: str, **kwargs: Any) -> dict[str, Any]:
    client = Listener("refused")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, **kwargs)
    assert isinstance(client.connect_error, dict)
    return client.connect_error


async def presence_of(base: str, viewer: Account, subject_id: str) -> dict[str, Any]:
    status, body = await call(
        "GET", f"{base}/api/users/presence?ids={subject_id}", headers=viewer.bearer
    )
    assert status == 200, body
    found: dict[str, Any] = body["data"]["users"][0]
    return found


async def test_auth_matrix_refuses_without_any_presence_side_effect(
    start_workers: WorkersFactory, mongo_url: str
) -> None:
    workers = await start_workers(2, **TIMERS)
    base = workers[0].url
    one, two = await register(base, "one"), await register(base, "two")
    three = await register(base, "three")
    cid = await conversation(base, two, [one, three], "room")
    listener = Listener("two")
    await listener.connect(workers[1].url, auth={"token": two.token})
    await listener.wait_for("presence:snapshot")

    # No credentials and no authenticate within the deadline: disconnected.
    silent = Listener("silent")
    await silent.connect(base)
    await asyncio.wait_for(silent.disconnected.wait(), timeout=5)
    assert silent.events("error")[0]["code"] == "auth_timeout"

    # A bad JWT in the handshake: connect_error with {code, message}.
    error = await refused(base, auth={"token": "e30.e30.sig"})
    assert error["code"] == "malformed" and error["message"]
    error = await refused(base, auth={"token": 42})
    assert error["code"] == "invalid_credentials"

    # A bare userId never authenticates, then nothing else is allowed.
    impostor = Listener("impostor")
    await impostor.connect(base)
    await impostor.client.emit("authenticate", {"userId": one.id})
    assert (await impostor.wait_for("error"))[0]["code"] == "invalid_credentials"
    await impostor.client.emit("presence:set", {"status": "online"})
    assert (await impostor.wait_for("error", 2))[1]["code"] == "auth_required"
    assert impostor.events("authenticated") == []

    # Failures are counted per address across the cluster: with a limit of 10, the eleventh
    # attempt in a minute, here spread over both workers, disconnects.
    guessers = [Listener("guesser-0"), Listener("guesser-1")]
    for index, guesser in enumerate(guessers):
        await guesser.connect(workers[index].url)
    # One failure so far: the bad JWT of the handshake above (the impostor's payload was
    # refused before any credential was checked).
    attempts = 1
    while attempts < 10:
        guesser = guessers[attempts % 2]
        await guesser.client.emit("authenticate", {"token": f"guess-{attempts}"})
        attempts += 1
        await guesser.wait_for("error", len(guesser.events("error")) + 1)
    assert all(g.client.connected for g in guessers)
    await guessers[0].client.emit("authenticate", {"token": "eleventh"})
    await asyncio.wait_for(guessers[0].disconnected.wait(), timeout=5)
    assert guessers[0].events("error")[-1]["code"] == "rate_limited"

    # A deactivated account and an expired share link cannot connect.
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    db = workers[0].env["PRESENCE_MONGO_DB"]
    await mongo[db]["users"].update_one({"_id": three.id}, {"$set": {"isActive": False}})
    await mongo.close()
    # (From another address: this one used up its failures above.)
    elsewhere = {"X-Forwarded-For": "198.51.100.20"}
    error = await refused(base, auth={"token": three.token}, headers=elsewhere)
    assert error["code"] == "inactive_user"
    status, body = await call(
        "POST", f"{base}/api/conversations/{cid}/share-links", {"expiresInSeconds": 1}, two.bearer
    )
    assert status == 201
    status, joined = await call(
        "POST", f"{base}/api/anonymous/join/{body['data']['id']}", {"nickname": "late"}
    )
    assert status == 201
    await asyncio.sleep(1.2)
    error = await refused(base, auth={"sessionToken": joined["sessionToken"]}, headers=elsewhere)
    assert error["code"] == "link_expired"

    await asyncio.sleep(1.5)
    assert listener.events("user:status") == []
    for subject in (one.id, three.id):
        record = await presence_of(base, two, subject)
        assert (record["isOnline"], record["lastActiveAt"]) == (False, None)
    for client in (listener, impostor, *guessers):
        await client.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_malformed_events_get_errors_or_a_disconnect_and_the_worker_lives(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(1, **TIMERS)
    worker = workers[0]
    pid = worker.process.pid
    one, two = await register(worker.url, "one"), await register(worker.url, "two")
    await conversation(worker.url, two, [one], "room")
    listener = Listener("two")
    await listener.connect(worker.url, auth={"token": two.token})
    await listener.wait_for("presence:snapshot")
    client = Listener("one")
    await client.connect(worker.url, auth={"token": one.token})
    await client.wait_for("presence:snapshot")
    rss_before = rss_kib(pid)

    bad_events: list[tuple[str, Any, str]] = [
        ("presence:set", {"status": 5}, "invalid_payload"),
        ("presence:set", {"status": "asleep"}, "invalid_payload"),
        ("presence:set", "online", "invalid_payload"),
        ("conversation:join", {}, "invalid_payload"),
        ("conversation:join", {"conversationId": "x" * 1000}, "invalid_payload"),
        ("conversation:join", {"conversationId": "a\u0000b"}, "invalid_payload"),
        ("conversation:join", {"conversationId": "nope"}, "not_found"),
        ("heartbeat", {"clientTime": []}, "invalid_payload"),
        ("no-such-event", {}, "unknown_event"),
        ("authenticate", {"token": one.token}, "already_authenticated"),
    ]
    for index, (event, payload, code) in enumerate(bad_events, start=1):
        await client.client.emit(event, payload)
        errors = await client.wait_for("error", index)
        assert errors[-1]["code"] == code, (event, payload)
    assert client.client.connected

    # An oversized message closes the socket.
    big = Listener("big")
    await big.connect(worker.url, auth={"token": one.token})
    await big.client.emit("heartbeat", {"pad": "x" * 100_000})
    await asyncio.wait_for(big.disconnected.wait(), timeout=10)

    # Binary attachments are refused by dropping the socket.
    binary = Listener("binary")
    await binary.connect(worker.url, auth={"token": one.token})
    await binary.client.emit("heartbeat", {"blob": b"\x00" * 1000})
    await asyncio.wait_for(binary.disconnected.wait(), timeout=10)

    # A flood gets one rate_limited error, then the socket is dropped.
    flood = Listener("flood")
    await flood.connect(worker.url, auth={"token": one.token})
    await flood.wait_for("presence:snapshot")
    for _ in range(300):
        if not flood.client.connected:
            break
        await flood.client.emit("heartbeat", {})
    await asyncio.wait_for(flood.disconnected.wait(), timeout=10)
    assert [e["code"] for e in flood.events("error")] == ["rate_limited"]

    assert worker.process.poll() is None and worker.process.pid == pid
    status, _ = await call("GET", f"{worker.url}/healthz")
    assert status == 200
    assert rss_kib(pid) - rss_before < 50 * 1024
    # One stayed online throughout (its first socket is still there): no flap was broadcast.
    await asyncio.sleep(1.5)
    assert [s["isOnline"] for s in listener.statuses_of(one.id)] == [True]
    await client.close()
    await listener.close()
