"""Realtime presence over Socket.IO with real worker processes, real Redis and the real
MongoDB-compatible server: broadcasts exactly once per socket, across workers, with the stock
JavaScript client and python-socketio."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.conftest import EVERY_REDIS_MODE
from tests.e2e.conftest import WorkersFactory
from tests.support.accounts import Account, call, conversation, register
from tests.support.accounts import pair as shared_pair
from tests.support.sio import Listener
from tests.support.waiting import until

JS_DIR = Path(__file__).resolve().parents[1] / "js"
GRACE_S = 1.0
TIMERS = {
    "offline_grace_s": str(GRACE_S),
    "auth_deadline_s": "1",
    "ping_interval_s": "2",
    "ping_timeout_s": "2",
}


def epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def assert_presence_record(record: dict[str, Any]) -> None:
    """Every field of SPEC §6.3, correctly typed."""
    assert set(record) >= {
        "userId",
        "username",
        "isAnonymous",
        "isOnline",
        "status",
        "lastActiveAt",
        "lastSeen",
    }
    assert isinstance(record["userId"], str) and isinstance(record["username"], str)
    assert isinstance(record["isAnonymous"], bool) and isinstance(record["isOnline"], bool)
    assert record["status"] in ("online", "away", "dnd", "offline")
    assert record["isOnline"] is (record["status"] != "offline")
    for name in ("lastActiveAt", "lastSeen"):
        value = record[name]
        assert value is None or (isinstance(value, str) and value.endswith("Z") and "." in value)
        if value is not None:
            epoch(value)


async def pair(base: str) -> tuple[Account, Account]:
    """Two shared conversations: a transition must still reach each socket once."""
    return await shared_pair(base, shared_conversations=2)


async def quiet(seconds: float) -> None:
    await asyncio.sleep(seconds)


@EVERY_REDIS_MODE
def test_stock_javascript_client_hears_one_online_and_one_offline(
    start_workers: WorkersFactory,
) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is required for the interop test"
    assert (JS_DIR / "node_modules" / "socket.io-client").exists(), "run scripts/test-services.sh"
    workers = asyncio.run(start_workers(2, **TIMERS))
    one, two = asyncio.run(pair(workers[0].url))
    result = subprocess.run(
        [node, str(JS_DIR / "broadcast.mjs")],
        env={
            **os.environ,
            "LISTEN_URL": workers[1].url,
            "ACT_URL": workers[0].url,
            "TOKEN1": one.token,
            "TOKEN2": two.token,
            "USER1_ID": one.id,
            "SETTLE_MS": str(int((GRACE_S + 1.5) * 1000)),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    heard = json.loads(result.stdout)
    assert [s["isOnline"] for s in heard["statuses"]] == [True, False]
    for record in heard["statuses"]:
        assert_presence_record(record)
        assert (record["userId"], record["username"], record["isAnonymous"]) == (
            one.id,
            "one",
            False,
        )
    assert heard["statuses"][1]["lastSeen"] is not None
    assert heard["events"][:2] == ["authenticated", "presence:snapshot"]
    assert heard["refused"]["data"]["code"] == "malformed"
    assert heard["refused"]["message"] == "invalid or expired token"


@EVERY_REDIS_MODE
async def test_python_clients_on_different_workers_hear_each_transition_once(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(3, **TIMERS)
    one, two = await pair(workers[0].url)
    listener = Listener("two")
    await listener.connect(workers[1].url, auth={"token": two.token})
    snapshot = (await listener.wait_for("presence:snapshot"))[0]
    assert {u["userId"] for u in snapshot["users"]} == {one.id, two.id}
    for record in snapshot["users"]:
        assert_presence_record(record)

    actor = Listener("one")
    await actor.connect(workers[2].url, auth={"token": one.token})
    hello = (await actor.wait_for("authenticated"))[0]
    assert hello == {
        "success": True,
        "user": {"id": one.id, "username": "one", "isAnonymous": False},
    }
    await listener.wait_status(one.id, 1)
    closed_at = time.time()
    await actor.close()
    statuses = await listener.wait_status(one.id, 2, timeout_s=GRACE_S + 5)
    await quiet(GRACE_S + 1)
    statuses = listener.statuses_of(one.id)
    assert [s["isOnline"] for s in statuses] == [True, False]
    for record in statuses:
        assert_presence_record(record)
    # lastSeen is the moment the last connection closed; the offline came after the grace.
    offline = listener.heard[[h.data for h in listener.heard].index(statuses[1])]
    assert abs(epoch(statuses[1]["lastSeen"]) - closed_at) < 0.5
    assert GRACE_S - 0.2 <= offline.at - closed_at <= GRACE_S + 1.0
    print(
        f"last disconnect: offline heard {offline.at - closed_at:.2f} s later (grace {GRACE_S} s)"
    )
    await listener.close()


@EVERY_REDIS_MODE
async def test_multi_tab_across_workers_goes_offline_only_with_the_last_tab(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(2, **TIMERS)
    one, two = await pair(workers[0].url)
    listener = Listener("two")
    await listener.connect(workers[0].url, auth={"token": two.token})
    await listener.wait_for("presence:snapshot")
    tab_a, tab_b = Listener("tab-a"), Listener("tab-b")
    await tab_a.connect(workers[0].url, auth={"token": one.token})
    await tab_b.connect(workers[1].url, auth={"token": one.token})
    await listener.wait_status(one.id, 1)
    await quiet(0.5)
    heard_by_b = len(tab_b.statuses_of(one.id))
    await tab_a.close()
    await quiet(GRACE_S + 1.5)
    assert [s["isOnline"] for s in listener.statuses_of(one.id)] == [True]
    # Closing a tab changes nothing, even for the subject's other tab.
    assert len(tab_b.statuses_of(one.id)) == heard_by_b
    await tab_b.close()
    await listener.wait_status(one.id, 2, timeout_s=GRACE_S + 5)
    await quiet(1.0)
    assert [s["isOnline"] for s in listener.statuses_of(one.id)] == [True, False]
    await listener.close()


async def test_a_reload_within_the_grace_period_sends_nothing(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(2, **TIMERS)
    one, two = await pair(workers[0].url)
    listener = Listener("two")
    await listener.connect(workers[0].url, auth={"token": two.token})
    await listener.wait_for("presence:snapshot")
    first = Listener("before-reload")
    await first.connect(workers[0].url, auth={"token": one.token})
    await listener.wait_status(one.id, 1)
    await first.close()
    await quiet(GRACE_S / 3)
    second = Listener("after-reload")
    await second.connect(workers[1].url, auth={"token": one.token})  # lands on another worker
    await quiet(GRACE_S + 1.5)
    assert [s["isOnline"] for s in listener.statuses_of(one.id)] == [True]
    await second.close()
    await listener.close()


async def test_anonymous_participants_are_announced_to_their_conversation(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(2, **TIMERS)
    host = await register(workers[0].url, "host")
    cid = await conversation(workers[0].url, host, [], "open")
    status, body = await call(
        "POST", f"{workers[0].url}/api/conversations/{cid}/share-links", {}, host.bearer
    )
    status, joined = await call(
        "POST", f"{workers[1].url}/api/anonymous/join/{body['data']['id']}", {"nickname": "guest"}
    )
    assert status == 201
    guest_id = joined["participant"]["id"]
    listener = Listener("host")
    await listener.connect(workers[0].url, auth={"token": host.token})
    await listener.wait_for("presence:snapshot")
    guest = Listener("guest")
    await guest.connect(workers[1].url, auth={"sessionToken": joined["sessionToken"]})
    hello = (await guest.wait_for("authenticated"))[0]
    assert hello["user"] == {"id": guest_id, "username": "guest", "isAnonymous": True}
    snapshot = (await guest.wait_for("presence:snapshot"))[0]
    assert host.id in {u["userId"] for u in snapshot["users"]}
    await guest.close()
    statuses = await listener.wait_status(guest_id, 2, timeout_s=GRACE_S + 5)
    assert [(s["isOnline"], s["isAnonymous"]) for s in statuses] == [(True, True), (False, True)]
    await listener.close()


async def test_invisible_looks_offline_to_others_everywhere_but_not_to_itself(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(2, **TIMERS)
    one, two = await pair(workers[0].url)
    listener = Listener("two")
    await listener.connect(workers[1].url, auth={"token": two.token})
    await listener.wait_for("presence:snapshot")
    tab_a, tab_b = Listener("tab-a"), Listener("tab-b")
    await tab_a.connect(workers[0].url, auth={"token": one.token})
    await tab_b.connect(workers[1].url, auth={"token": one.token})
    await listener.wait_status(one.id, 1)

    await tab_a.client.emit("presence:set", {"status": "invisible"})
    others = await listener.wait_status(one.id, 2)
    assert (others[1]["isOnline"], others[1]["status"]) == (False, "offline")
    assert "manualStatus" not in others[1]
    for tab in (tab_a, tab_b):
        # A tab may also have heard one come online (whichever tab registered first), so it
        # waits for its own view of the change, not for a count.
        def own_view(tab: Listener = tab) -> bool:
            return any("manualStatus" in s for s in tab.statuses_of(one.id))

        await until(own_view, 10)
        own = tab.statuses_of(one.id)
        assert (own[-1]["isOnline"], own[-1]["manualStatus"]) == (True, "invisible")
        assert [s for s in tab.statuses_of(one.id) if not s["isOnline"]] == []

    status, body = await call(
        "GET", f"{workers[0].url}/api/users/presence?ids={one.id}", headers=two.bearer
    )
    assert status == 200 and body["data"]["users"][0]["status"] == "offline"
    status, body = await call("GET", f"{workers[1].url}/api/conversations", headers=two.bearer)
    assert status == 200
    assert {m["userId"]: m["status"] for m in body["data"][0]["members"]}[one.id] == "offline"
    late = Listener("two-again")
    await late.connect(workers[0].url, auth={"token": two.token})
    snapshot = (await late.wait_for("presence:snapshot"))[0]
    assert {u["userId"]: u["status"] for u in snapshot["users"]}[one.id] == "offline"
    own_snapshot = Listener("one-again")
    await own_snapshot.connect(workers[0].url, auth={"token": one.token})
    mine = (await own_snapshot.wait_for("presence:snapshot"))[0]
    me = {u["userId"]: u for u in mine["users"]}[one.id]
    assert (me["isOnline"], me["manualStatus"]) == (True, "invisible")

    await tab_b.client.emit("presence:set", {"status": "dnd"})
    others = await listener.wait_status(one.id, 3)
    assert (others[2]["isOnline"], others[2]["status"]) == (True, "dnd")
    for client in (listener, late, own_snapshot, tab_a, tab_b):
        await client.close()


async def test_heartbeat_and_conversation_join(start_workers: WorkersFactory) -> None:
    workers = await start_workers(1, **TIMERS)
    one, two = await pair(workers[0].url)
    third = await register(workers[0].url, "third")
    cid = await conversation(workers[0].url, third, [one], "later")
    client = Listener("one")
    await client.connect(workers[0].url, auth={"token": one.token})
    await client.wait_for("presence:snapshot")
    await client.client.emit("heartbeat", {"clientTime": 1})
    ack = (await client.wait_for("heartbeat:ack"))[0]
    assert abs(epoch(ack["serverTime"]) - time.time()) < 2
    await client.client.emit("conversation:join", {"conversationId": cid})
    state = (await client.wait_for("presence:state"))[0]
    assert state["conversationId"] == cid
    assert {u["userId"] for u in state["users"]} == {one.id, third.id}
    other = await conversation(workers[0].url, two, [third], "not mine")
    await client.client.emit("conversation:join", {"conversationId": other})
    error = (await client.wait_for("error"))[0]
    assert error["code"] == "not_member"
    await client.close()


async def test_long_polling_works_when_the_worker_keeps_the_session(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(1, **TIMERS)
    one, two = await pair(workers[0].url)
    listener = Listener("two")
    await listener.connect(workers[0].url, auth={"token": two.token}, transports=["polling"])
    await listener.wait_for("presence:snapshot")
    actor = Listener("one")
    await actor.connect(workers[0].url, auth={"token": one.token}, transports=["polling"])
    await listener.wait_status(one.id, 1)
    await actor.close()
    statuses = await listener.wait_status(one.id, 2, timeout_s=GRACE_S + 5)
    assert [s["isOnline"] for s in statuses] == [True, False]
    await listener.close()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_headers_authenticate_non_browser_clients(
    start_workers: WorkersFactory, transport: str
) -> None:
    workers = await start_workers(1, **TIMERS)
    one, _ = await pair(workers[0].url)
    client = Listener("one")
    await client.connect(workers[0].url, headers=one.bearer, transports=[transport])
    hello = (await client.wait_for("authenticated"))[0]
    assert hello["user"]["id"] == one.id
    await client.close()


async def test_a_live_connection_is_activity_through_the_transport_heartbeat(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(
        1,
        **{
            **TIMERS,
            "ping_interval_s": "0.5",
            "throttle_interval_s": "1",
            "offline_threshold_s": "2",
        },
    )
    one, two = await pair(workers[0].url)
    client = Listener("one")
    await client.connect(workers[0].url, auth={"token": one.token})
    await client.wait_for("presence:snapshot")
    connected_at = time.time()
    await quiet(3.0)  # idle past the offline threshold, sending nothing but transport pongs
    status, body = await call(
        "GET", f"{workers[0].url}/api/users/presence?ids={one.id}", headers=two.bearer
    )
    record = body["data"]["users"][0]
    assert status == 200 and record["isOnline"] is True
    assert epoch(record["lastActiveAt"]) > connected_at + 1.5
    await client.close()


async def test_a_full_worker_refuses_new_connections_cleanly(
    start_workers: WorkersFactory,
) -> None:
    workers = await start_workers(1, **{**TIMERS, "max_connections": "1"})
    one, two = await pair(workers[0].url)
    first = Listener("first")
    await first.connect(workers[0].url, auth={"token": one.token})
    second = Listener("second")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await second.connect(workers[0].url, auth={"token": two.token})
    assert second.connect_error["code"] == "server_full"
    await first.close()
    await quiet(0.2)
    await second.connect(workers[0].url, auth={"token": two.token})
    assert (await second.wait_for("authenticated"))[0]["user"]["id"] == two.id
    await second.close()
