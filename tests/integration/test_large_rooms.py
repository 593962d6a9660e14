"""Large conversations (SPEC §11) across two workers on real Redis and the test database: a
conversation with more members than ``PRESENCE_ROOM_FANOUT_LIMIT`` hears its online count (at
most once a second, kept incrementally), not its members' transitions; a socket hears the
members it subscribed to; the room's presence comes by page, online members first."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from presence.keys import ROOM_SENTINEL, decoded
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.cluster import Cluster
from tests.support.sio import Listener
from tests.support.waiting import until

LIMIT = 3  # five members make a large room


@pytest.fixture(autouse=True)
async def _sockets_closed(make_cluster: ClusterFactory) -> AsyncIterator[None]:
    yield
    await Listener.close_all()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _crowd(cluster: Cluster) -> tuple[str, list[tuple[str, str]]]:
    """A conversation of five users (one, two, …): (its id, [(token, id)] in that order)."""
    people = [await cluster.register(name) for name in ("one", "two", "three", "four", "five")]
    resp = await cluster[0].client.post(
        "/api/conversations",
        json={"title": "crowd", "memberIds": [uid for _, uid in people[1:]]},
        headers=_auth(people[0][0]),
    )
    assert resp.status == 201, await resp.text()
    body = (await resp.json())["data"]
    assert body["members"] == [], "a large conversation's members are never listed whole"
    return body["id"], people


async def _socket(cluster: Cluster, worker: int, name: str, token: str) -> Listener:
    listener = Listener(name)
    await listener.connect(str(cluster[worker].client.make_url("/")), auth={"token": token})
    await listener.wait_for("presence:snapshot")
    return listener


@EVERY_REDIS_MODE
async def test_a_large_room_hears_its_count_not_its_members(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(2, room_fanout_limit=LIMIT)
    crowd, people = await _crowd(cluster)
    watcher = await _socket(cluster, 1, "one", people[0][0])
    snapshot = watcher.events("presence:snapshot")[0]
    assert [u["userId"] for u in snapshot["users"]] == [people[0][1]]
    await watcher.client.emit("conversation:join", {"conversationId": crowd})
    joined = (await watcher.wait_for("presence:count"))[0]
    # "one" is online already (its REST calls), the others are not.
    assert joined == {"conversationId": crowd, "online": 1, "total": 5}

    # Three members come online on the other worker, at once: counts, never their statuses.
    others = [await _socket(cluster, 0, f"m{i}", people[i][0]) for i in (1, 2, 3)]
    await until(
        lambda: watcher.events("presence:count")[-1]["online"] == 4,
        timeout_s=5,
        what="the count of four",
    )
    assert watcher.events("user:status") == []
    sent_to_room = [h for h in watcher.heard if h.event == "presence:count"][1:]
    gaps = [b.at - a.at for a, b in itertools.pairwise(sent_to_room)]
    assert all(gap >= 0.9 for gap in gaps), gaps  # at most once a second, cluster-wide
    await others[0].close()
    await until(
        lambda: watcher.events("presence:count")[-1]["online"] == 3,
        timeout_s=10,
        what="the count back to three",
    )
    # Kept incrementally, and equal to a fresh count from the live states.
    room = cluster[0].keys.room_online(crowd)
    found: list[bytes] = list(await cluster[0].redis.zrange(room, 0, -1))  # type: ignore[arg-type]
    kept = {decoded(m) for m in found} - {ROOM_SENTINEL}
    await cluster[0].redis.delete(room)
    conversation = await cluster[1].c.conversations.record(crowd)
    assert conversation is not None
    recounted = await cluster[1].c.rooms.count(conversation)
    assert (recounted.online, len(kept)) == (3, 3)


async def test_a_socket_hears_the_members_it_subscribed_to(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(2, room_fanout_limit=LIMIT, offline_grace_s=0.2)
    _, people = await _crowd(cluster)
    stranger_token, stranger = await cluster.register("stranger")
    watcher = await _socket(cluster, 1, "one", people[0][0])
    two, three = people[1][1], people[2][1]
    await watcher.client.emit("presence:subscribe", {"ids": [two, stranger, two]})
    followed = (await watcher.wait_for("presence:subscribed"))[0]
    # A stranger shares no conversation: left out, as everywhere.
    assert [u["userId"] for u in followed["users"]] == [two]
    assert followed["users"][0]["isOnline"] is False
    socket_two = await _socket(cluster, 0, "two", people[1][0])
    await _socket(cluster, 0, "stranger", stranger_token)
    await watcher.wait_status(two, 1)
    resp = await cluster[0].client.put(
        "/api/users/me/status", json={"status": "dnd"}, headers=_auth(people[1][0])
    )
    assert resp.status == 200
    assert (await watcher.wait_status(two, 2))[-1]["status"] == "dnd"
    # A new list replaces the old one.
    await watcher.client.emit("presence:subscribe", {"ids": [three]})
    await watcher.wait_for("presence:subscribed", count=2)
    await socket_two.close()
    await _socket(cluster, 0, "three", people[2][0])
    await watcher.wait_status(three, 1)
    await asyncio.sleep(0.5)  # two's offline (grace 0.2 s) would have arrived by now
    assert len(watcher.statuses_of(two)) == 2
    await watcher.client.emit("presence:unsubscribe", {})
    await watcher.wait_for("presence:subscribed", count=3)
    assert watcher.events("presence:subscribed")[-1] == {"users": []}
    # More than 200 ids: an error, and the list is unchanged.
    await watcher.client.emit("presence:subscribe", {"ids": [f"id{i}" for i in range(201)]})
    error = (await watcher.wait_for("error"))[0]
    assert error["code"] == "too_many_ids"


async def test_a_large_rooms_presence_comes_by_page_online_first(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2, room_fanout_limit=LIMIT)
    crowd, people = await _crowd(cluster)
    token = people[0][0]
    online = {people[i][1] for i in (0, 2, 4)}
    for i in (0, 2, 4):
        await _socket(cluster, i % 2, f"m{i}", people[i][0])

    async def page(cursor: str | None, limit: int = 2) -> dict[str, Any]:
        query = f"limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        resp = await cluster[1].client.get(
            f"/api/conversations/{crowd}/presence?{query}", headers=_auth(token)
        )
        assert resp.status == 200, await resp.text()
        return dict((await resp.json())["data"])

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        got = await page(cursor)
        assert (got["online"], got["total"]) == (3, 5)
        seen += got["users"]
        cursor = got["next"]
        if cursor is None:
            break
    ids = [u["userId"] for u in seen]
    assert sorted(ids) == sorted(uid for _, uid in people)  # each member once
    assert {u["userId"] for u in seen[:3]} == online  # online first
    assert all(u["isOnline"] for u in seen[:3]) and not any(u["isOnline"] for u in seen[3:])
    for bad, code in (("cursor=x", "invalid_cursor"), ("limit=0", "invalid_limit")):
        resp = await cluster[0].client.get(
            f"/api/conversations/{crowd}/presence?{bad}", headers=_auth(token)
        )
        assert resp.status == 400 and (await resp.json())["error"]["code"] == code
