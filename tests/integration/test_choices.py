"""SPEC §11 across two workers, on real Redis in every mode and the test database: a custom
status that ends by itself (once, cluster-wide, even when Redis lost its schedule), automatic
away and its return on any worker, and last-seen privacy in REST answers and in the events a
worker delivers to each socket as its own user may see them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from presence.domain import ManualStatus, SubjectKind, SubjectRef
from presence.store.base import ManualChoice
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.cluster import Cluster
from tests.support.sio import Listener
from tests.support.waiting import until

# What Redis decides (an end taken once, an idle subject taken away once) runs in every mode;
# privacy is applied by the workers, the same in every mode.


@pytest.fixture(autouse=True)
async def _sockets_closed(make_cluster: ClusterFactory) -> AsyncIterator[None]:
    """Every client closed before the workers stop (and every payload on the contract)."""
    yield
    await Listener.close_all()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _pair(cluster: Cluster) -> tuple[str, str, Listener, str, Listener]:
    """``one`` connected to worker 0 and ``two`` watching it from worker 1, sharing a
    conversation: (one's id, one's token, one's socket, two's token, two's socket)."""
    token_one, one = await cluster.register("one")
    token_two, _ = await cluster.register("two")
    resp = await cluster[0].client.post(
        "/api/conversations", json={"title": "pair", "memberIds": [one]}, headers=_auth(token_two)
    )
    assert resp.status == 201, await resp.text()
    mine = Listener("one")
    await mine.connect(str(cluster[0].client.make_url("/")), auth={"token": token_one})
    await mine.wait_for("presence:snapshot")
    watcher = Listener("two")
    await watcher.connect(str(cluster[1].client.make_url("/")), auth={"token": token_two})
    await watcher.wait_for("presence:snapshot")
    return one, token_one, mine, token_two, watcher


@EVERY_REDIS_MODE
async def test_a_custom_status_ends_once_cluster_wide_within_two_seconds(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2)
    one, token, mine, _, watcher = await _pair(cluster)
    ends = datetime.now(UTC) + timedelta(seconds=1.5)
    resp = await cluster[0].client.put(
        "/api/users/me/status",
        json={"status": "dnd", "text": "  deep work  ", "until": _iso(ends)},
        headers=_auth(token),
    )
    assert resp.status == 200, await resp.text()
    own = (await resp.json())["data"]
    assert (own["status"], own["statusText"], own["statusUntil"]) == (
        "dnd",
        "deep work",
        _iso(ends),
    )
    heard = await watcher.wait_status(one, 1)
    assert (heard[-1]["status"], heard[-1]["statusText"]) == ("dnd", "deep work")

    await watcher.wait_status(one, 2, timeout_s=ends.timestamp() - time.time() + 2.0)
    ended_at = time.time()
    assert ended_at <= ends.timestamp() + 2.0
    ended = watcher.statuses_of(one)[-1]
    assert (ended["status"], ended["statusText"], ended["statusUntil"]) == ("online", None, None)
    # Its own sockets heard it too.
    await until(
        lambda: mine.statuses_of(one)[-1]["statusText"] is None, timeout_s=2, what="its own end"
    )
    # Exactly one worker ended it: one announcement, and the database agrees.
    await asyncio.sleep(0.6)
    assert len(watcher.statuses_of(one)) == 2
    subject = SubjectRef(SubjectKind.USER, one)
    stored = (await cluster[1].store.get_presence([subject]))[subject]
    assert (stored.manual_status, stored.status_text, stored.status_until) == (
        ManualStatus.ONLINE,
        None,
        None,
    )


@EVERY_REDIS_MODE
async def test_an_end_redis_lost_is_restored_by_the_leader_and_ended_once(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2)
    one, _, _, _, watcher = await _pair(cluster)
    subject = SubjectRef(SubjectKind.USER, one)
    # Its moment passed long ago while Redis had no schedule of it (a restart, a flush, or
    # the worker that took it died before clearing it): only the database still has it.
    long_ago = datetime.now(UTC) - timedelta(minutes=1)
    await cluster[0].store.set_manual_status(subject, ManualChoice(ManualStatus.DND, "x", long_ago))
    await cluster[0].c.presence.profiles.changed([subject])
    # Both workers restore it (the second may find it scheduled, or taken meanwhile and
    # not yet cleared): however often it is scheduled, it ends once.
    restored = [await w.c.choices.restore_schedule() for w in cluster.workers]
    assert restored[0] == 1
    await until(
        lambda: any(s["statusText"] is None for s in watcher.statuses_of(one)),
        timeout_s=3,
        what="the restored end announced",
    )
    await asyncio.sleep(0.6)
    assert len(watcher.statuses_of(one)) == 1
    stored = (await cluster[1].store.get_presence([subject]))[subject]
    assert stored.status_until is None


@EVERY_REDIS_MODE
async def test_idle_subjects_go_away_once_and_come_back_on_any_worker(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2, idle_away_s=1.0)
    one, token, mine, _, watcher = await _pair(cluster)
    # Heartbeats keep the socket alive but are not the person: it still goes away.
    await mine.client.emit("heartbeat", {})
    away = await watcher.wait_status(one, 1, timeout_s=4)
    assert (away[-1]["status"], away[-1]["autoAway"]) == ("away", True)
    await mine.client.emit("activity", {})
    back = await watcher.wait_status(one, 2, timeout_s=3)
    assert (back[-1]["status"], back[-1]["autoAway"]) == ("online", False)
    # Away again, then back through a REST request to the other worker.
    await watcher.wait_status(one, 3, timeout_s=4)
    resp = await cluster[1].client.get("/api/users/me", headers=_auth(token))
    assert resp.status == 200
    statuses = await watcher.wait_status(one, 4, timeout_s=3)
    assert [(s["status"], s["autoAway"]) for s in statuses] == [
        ("away", True),
        ("online", False),
        ("away", True),
        ("online", False),
    ]


async def test_automatic_away_never_changes_a_manual_status(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2, idle_away_s=1.0)
    one, token, _, _, watcher = await _pair(cluster)
    resp = await cluster[0].client.put(
        "/api/users/me/status", json={"status": "dnd"}, headers=_auth(token)
    )
    assert resp.status == 200
    await watcher.wait_status(one, 1)
    await asyncio.sleep(2.5)  # past the idle time: nothing to say
    assert [s["status"] for s in watcher.statuses_of(one)] == ["dnd"]
    record = await cluster[1].c.presence.record(SubjectRef(SubjectKind.USER, one))
    assert record is not None and (record.status.value, record.auto_away) == ("dnd", False)


async def test_last_seen_privacy_in_answers_and_in_each_sockets_own_view(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2, offline_grace_s=0.2)
    token_one, one = await cluster.register("one")
    token_open, _ = await cluster.register("open")
    token_shy, shy = await cluster.register("shy")
    resp = await cluster[0].client.post(
        "/api/conversations",
        json={"title": "t", "memberIds": [one, shy]},
        headers=_auth(token_open),
    )
    assert resp.status == 201, await resp.text()
    # "shy" hides its own last seen: it sees others' approximately at best (reciprocity).
    resp = await cluster[1].client.put(
        "/api/users/me/privacy", json={"lastSeen": "hidden"}, headers=_auth(token_shy)
    )
    assert resp.status == 200 and (await resp.json())["data"] == {"lastSeen": "hidden"}
    resp = await cluster[0].client.get("/api/users/me/privacy", headers=_auth(token_shy))
    assert (await resp.json())["data"] == {"lastSeen": "hidden"}

    watchers: dict[str, Listener] = {}
    for name, token in (("open", token_open), ("shy", token_shy)):
        watchers[name] = Listener(name)
        await watchers[name].connect(str(cluster[1].client.make_url("/")), auth={"token": token})
        await watchers[name].wait_for("presence:snapshot")
    mine = Listener("one")
    await mine.connect(str(cluster[0].client.make_url("/")), auth={"token": token_one})
    await mine.wait_for("presence:snapshot")
    await mine.close()
    for watcher in watchers.values():
        await watcher.wait_status(one, 2)
    offline: dict[str, Any] = {n: w.statuses_of(one)[-1] for n, w in watchers.items()}
    assert offline["open"]["isOnline"] is False
    assert offline["open"]["lastSeen"] is not None and offline["open"]["lastSeenApprox"] is None
    # One message through the queue; worker 1 gave each socket its own user's view.
    assert (offline["shy"]["lastSeen"], offline["shy"]["lastActiveAt"]) == (None, None)
    assert offline["shy"]["lastSeenApprox"] == "recently"

    async def seen_by(token: str) -> dict[str, Any]:
        resp = await cluster[0].client.get(f"/api/users/presence?ids={one}", headers=_auth(token))
        return dict((await resp.json())["data"]["users"][0])

    assert (await seen_by(token_open))["lastSeen"] == offline["open"]["lastSeen"]
    assert (await seen_by(token_shy))["lastSeenApprox"] == "recently"
    # "one" hides its own: nobody sees it, approximately or not; it still sees itself.
    resp = await cluster[0].client.put(
        "/api/users/me/privacy", json={"lastSeen": "hidden"}, headers=_auth(token_one)
    )
    assert resp.status == 200
    for token in (token_open, token_shy):
        seen = await seen_by(token)
        assert (seen["lastSeen"], seen["lastSeenApprox"], seen["lastActiveAt"]) == (
            None,
            None,
            None,
        )
    resp = await cluster[1].client.get("/api/users/me", headers=_auth(token_one))
    assert (await resp.json())["data"]["presence"]["lastSeen"] is not None


async def test_a_privacy_change_reaches_the_users_live_sockets_on_every_worker(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2, offline_grace_s=0.2)
    one, token_one, mine, token_two, watcher = await _pair(cluster)
    await mine.close()
    first = (await watcher.wait_status(one, 1))[-1]
    assert first["lastSeen"] is not None
    # The watcher (on worker 1) changes its own privacy through worker 0.
    resp = await cluster[0].client.put(
        "/api/users/me/privacy", json={"lastSeen": "approximate"}, headers=_auth(token_two)
    )
    assert resp.status == 200
    mine = Listener("one")
    await mine.connect(str(cluster[0].client.make_url("/")), auth={"token": token_one})
    await mine.wait_for("presence:snapshot")
    await mine.close()
    last = (await watcher.wait_status(one, 3))[-1]
    assert (last["isOnline"], last["lastSeen"], last["lastSeenApprox"]) == (
        False,
        None,
        "recently",
    )


async def test_a_refused_choice_stores_nothing_and_says_why(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(1)
    token, me = await cluster.register("one")
    now = datetime.now(UTC)
    refused = [
        ({"status": "dnd", "text": "x" * 101}, "invalid_status_text"),
        ({"status": "dnd", "text": "line\nbreak"}, "invalid_status_text"),
        ({"status": "dnd", "text": 5}, "invalid_status_text"),
        ({"status": "dnd", "until": _iso(now - timedelta(seconds=1))}, "invalid_until"),
        ({"status": "dnd", "until": _iso(now + timedelta(days=30, minutes=1))}, "invalid_until"),
        ({"status": "dnd", "until": now.timestamp() + 60}, "invalid_until"),
        ({"status": "dnd", "until": "tomorrow"}, "invalid_until"),
    ]
    for body, code in refused:
        resp = await cluster[0].client.put("/api/users/me/status", json=body, headers=_auth(token))
        answer = await resp.json()
        assert (resp.status, answer["error"]["code"]) == (400, code), (body, answer)
        assert answer["error"]["message"]
    for body in ({"lastSeen": "everyone"}, {"lastSeen": None}, {}):
        resp = await cluster[0].client.put("/api/users/me/privacy", json=body, headers=_auth(token))
        answer = await resp.json()
        assert (resp.status, answer["error"]["code"]) == (400, "invalid_privacy"), (body, answer)
    # Over Socket.IO: the same refusals as error events.
    socket = Listener("one")
    await socket.connect(str(cluster[0].client.make_url("/")), auth={"token": token})
    await socket.wait_for("presence:snapshot")
    await socket.client.emit("presence:set", {"status": "dnd", "text": "\x07"})
    await socket.client.emit("presence:set", {"status": "dnd", "until": "2020-01-01T00:00:00Z"})
    errors = await socket.wait_for("error", count=2)
    assert [e["code"] for e in errors] == ["invalid_status_text", "invalid_until"]
    # Nothing was stored: the status is still the automatic one, with no text and no end.
    subject = SubjectRef(SubjectKind.USER, me)
    stored = (await cluster[0].store.get_presence([subject]))[subject]
    assert (
        stored.manual_status,
        stored.status_text,
        stored.status_until,
        stored.privacy.value,
    ) == (
        ManualStatus.ONLINE,
        None,
        None,
        "exact",
    )
    # A text of 100 characters after trimming is fine, and "" is none.
    resp = await cluster[0].client.put(
        "/api/users/me/status",
        json={"status": "away", "text": f"  {'y' * 100}  "},
        headers=_auth(token),
    )
    assert resp.status == 200 and (await resp.json())["data"]["statusText"] == "y" * 100
    resp = await cluster[0].client.put(
        "/api/users/me/status", json={"status": "away", "text": ""}, headers=_auth(token)
    )
    assert (await resp.json())["data"]["statusText"] is None
