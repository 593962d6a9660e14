"""Scenario 9: schema and frame fuzzing. Schemathesis on every operation of the served OpenAPI
document; random and truncated Engine.IO / Socket.IO frames against a worker process, which must
stay the same process. (The hypothesis properties of the validators and the pure policy are unit
tests: ``tests/unit/test_properties.py``, run by ``make test``.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import hypothesis
import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck
from pymongo import MongoClient

from devstack.database import mongo_url_of
from presence.api.openapi import document
from tests.fault.report import Row
from tests.fault.stack import Stack
from tests.fault.truth import presence_view
from tests.support.accounts import Account, call, conversation, register
from tests.support.processes import http
from tests.support.sio import Listener
from tests.support.strategies import JSON


def admin_token(stack: Stack, url: str) -> tuple[dict[str, str], str]:
    status, body = http(
        "POST",
        url + "/api/auth/register",
        {"username": "ops", "email": "ops@example.test", "password": "password-1"},
    )
    assert status == 201, body
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url_of(stack.mongo))
    client[stack.db_name]["users"].update_one(
        {"_id": body["user"]["id"]}, {"$set": {"role": "admin"}}
    )
    client.close()
    return {"Authorization": f"Bearer {body['token']}"}, body["user"]["id"]


@pytest.mark.scenario(9)
def test_every_operation_of_the_openapi_document_under_schemathesis(stack: Stack, row: Row) -> None:
    row.done = (
        "schemathesis (generated valid and invalid requests) against every operation of the"
        " served OpenAPI document, authenticated as an admin, on a worker process"
    )
    row.checked = (
        "no 5xx; every status code, content type and body conforms to the document; the worker"
        " is the same process afterwards"
    )
    stack.settings["PRESENCE_AUTH_FAILURES_PER_ADDRESS"] = "100000"
    stack.settings["PRESENCE_AUTH_FAILURES_PER_ACCOUNT"] = "100000"
    worker = asyncio.run(stack.start_worker("w0"))
    pid = worker.process.pid
    headers, _ = admin_token(stack, worker.url)
    schema = schemathesis.openapi.from_dict(document())
    checks = [
        schemathesis.checks.not_a_server_error,
        schemathesis.checks.status_code_conformance,
        schemathesis.checks.content_type_conformance,
        schemathesis.checks.response_schema_conformance,
    ]
    operations, cases = 0, 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # Err raises: a broken document
        operations += 1
        counted: list[int] = []

        @hypothesis.settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.generate],
        )
        @hypothesis.given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            counted.append(1)  # noqa: B023
            case.call_and_validate(base_url=worker.url, headers=headers, checks=checks)

        fuzz()
        cases += len(counted)
    row.measure(f"{operations} operations, {cases} generated requests, no failed check")
    assert worker.process.pid == pid and worker.process.poll() is None
    assert http("GET", worker.url + "/healthz")[0] == 200


# Frames earlier runs found mishandled, sent by every run: event data that is not a list, a list
# as the event name, Engine.IO packet types past the known ones.
FOUND_BEFORE = ("42null", "42[]", "42{}", '42"x"', "42[1]", '42[["x"]]', "431null", "7", "8x", "9")


def frames() -> st.SearchStrategy[str | bytes]:
    events = st.sampled_from(
        ["authenticate", "presence:set", "conversation:join", "heartbeat", "x", ""]
    )
    event_packet = st.builds(
        lambda kind, ns, ack, event, data: f"{kind}{ns}{ack}" + json.dumps([event, data]),
        st.sampled_from(["42", "43", "45", "46", "40", "41", "44", "4", "49"]),
        st.sampled_from(["", "/", "/admin,", "/x,"]),
        st.sampled_from(["", "1", "9" * 120, "-1"]),
        events,
        JSON,
    )
    truncated = event_packet.flatmap(lambda f: st.integers(0, len(f)).map(lambda n: f[:n]))
    attachments = st.builds(
        lambda n: f"45{n}-" + json.dumps(["x", {"_placeholder": True, "num": 0}]),
        st.integers(0, 10**10),
    )
    nested = st.integers(10, 5000).map(lambda depth: "42" + "[" * depth + "]" * depth)
    return st.one_of(
        event_packet,
        truncated,
        attachments,
        nested,
        st.text(max_size=200),
        st.binary(max_size=200),
        st.sampled_from(FOUND_BEFORE),
        st.just("3probe"),
    )


@pytest.mark.scenario(9)
async def test_random_and_truncated_socketio_frames_leave_the_worker_alive(
    stack: Stack, row: Row
) -> None:
    row.done = (
        "1 500 hypothesis-generated frames (event packets of every type with random JSON,"
        " truncated packets, 10-digit attachment counts, 5 000-deep nesting, random text and"
        " bytes) over raw websockets, authenticated and not, to one worker process"
    )
    row.checked = (
        "the worker keeps its process id and answers /healthz; a bystander's socket stays"
        " connected and its presence unchanged; the offending sockets are answered or dropped"
    )
    # Generated first: generation blocks this loop, and the bystander must answer pings.
    generated: list[str | bytes] = []

    @hypothesis.settings(
        max_examples=1500,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate],
    )
    @hypothesis.given(frame=frames())
    def collect(frame: str | bytes) -> None:
        generated.append(frame)

    collect()

    worker = await stack.start_worker("w0")
    pid = worker.process.pid
    fuzzer, bystander = (
        await register(worker.url, "fuzzer"),
        await register(worker.url, "bystander"),
    )
    viewer = await register(worker.url, "viewer")
    await conversation(worker.url, viewer, [fuzzer, bystander], "room")
    watcher = Listener("bystander")
    await watcher.connect(worker.url, auth={"token": bystander.token})
    await watcher.wait_for("presence:snapshot")
    await asyncio.sleep(0.5)  # its own online event arrives before the fuzzing starts
    before = (await presence_view(worker.url, viewer, [bystander]))[bystander.id]
    heard_before = len(watcher.events("user:status"))

    dropped = await send_frames(worker.url, fuzzer, generated)
    await asyncio.sleep(1)
    after = (await presence_view(worker.url, viewer, [bystander]))[bystander.id]
    assert worker.process.pid == pid and worker.process.poll() is None
    assert (await call("GET", worker.url + "/healthz"))[0] == 200
    assert watcher.client.connected
    assert "Traceback" not in worker.output(), "a malformed frame was logged as a crash"
    assert (after["isOnline"], after["status"]) == (before["isOnline"], before["status"])
    later = watcher.events("user:status")[heard_before:]
    assert [s for s in later if s["userId"] == bystander.id] == []
    row.measure(
        f"{len(generated)} frames sent, {dropped} sockets dropped by the worker on the way;"
        " same worker pid, /healthz 200, the bystander untouched"
    )


async def send_frames(url: str, subject: Account, generated: list[str | bytes]) -> int:
    """Send every frame, half the sockets authenticated first; reopen when dropped."""
    ws_url = url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    dropped = 0
    async with aiohttp.ClientSession() as session:
        ws: aiohttp.ClientWebSocketResponse | None = None
        for index, frame in enumerate(generated):
            if ws is None or ws.closed:
                if ws is not None:
                    dropped += 1
                ws = await session.ws_connect(ws_url, max_msg_size=0)
                await ws.receive(timeout=5)  # the Engine.IO open packet
                if index % 2 == 0:
                    await ws.send_str("40" + json.dumps({"token": subject.token}))
            try:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
            except (ConnectionResetError, aiohttp.ClientError):
                continue
            if index % 50 == 0:
                await asyncio.sleep(0.01)  # let the worker answer; drain what it sent
                while True:
                    try:
                        message = await ws.receive(timeout=0.001)
                    except TimeoutError:
                        break
                    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
        if ws is not None:
            await ws.close()
    return dropped
