"""Presence over REST on three workers: precise last activity, transitions, guests, manual
status, and who may see whom."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from presence.domain import PresenceRecord, StatusChange, SubjectKind, SubjectRef
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.cluster import Cluster
from tests.support.waiting import until

# Every test here runs on standalone Redis, Sentinel and Cluster.
pytestmark = EVERY_REDIS_MODE


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def epoch(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


async def conversation(cluster: Cluster, token: str, members: list[str]) -> str:
    resp = await cluster[0].client.post(
        "/api/conversations", headers=bearer(token), json={"title": "team", "memberIds": members}
    )
    assert resp.status == 201, await resp.text()
    cid: str = (await resp.json())["data"]["id"]
    return cid


async def presence_in(
    cluster: Cluster, worker: int, headers: dict[str, str], cid: str
) -> dict[str, dict[str, Any]]:
    resp = await cluster[worker].client.get(f"/api/conversations/{cid}/presence", headers=headers)
    assert resp.status == 200, await resp.text()
    return {u["userId"]: u for u in (await resp.json())["data"]["users"]}


def listen(cluster: Cluster) -> list[tuple[int, PresenceRecord]]:
    """Public transitions decided on any worker, with the index of the deciding worker."""
    heard: list[tuple[int, PresenceRecord]] = []
    for index, worker in enumerate(cluster.workers):

        async def on_change(change: StatusChange, index: int = index) -> None:
            if change.public_changed:
                heard.append((index, change.public))

        worker.c.presence.add_listener(on_change)
    return heard


async def test_the_cluster_knows_the_last_activity_to_the_second_despite_throttled_writes(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(3)
    alice, alice_id = await cluster.register("alice")
    bob, _ = await cluster.register("bob")
    cid = await conversation(cluster, bob, [alice_id])

    assert (await cluster[0].client.get("/api/users/me", headers=bearer(alice))).status == 200
    await cluster.settle()
    subject = SubjectRef(SubjectKind.USER, alice_id)
    written = (await cluster[0].store.get_presence([subject]))[subject].last_active_at
    assert written is not None
    await asyncio.sleep(1.2)
    assert (await cluster[1].client.get("/api/users/me", headers=bearer(alice))).status == 200
    await asyncio.sleep(1.2)
    last = cluster[0].c.clock.now()
    assert (await cluster[0].client.get("/api/users/me", headers=bearer(alice))).status == 200

    await asyncio.sleep(1.0)
    seen = (await presence_in(cluster, 2, bearer(bob), cid))[alice_id]
    assert abs(epoch(seen["lastActiveAt"]) - last) < 0.05
    # ... while the database still holds the one write of the window.
    await cluster.settle()
    stored = (await cluster[2].store.get_presence([subject]))[subject].last_active_at
    assert stored == written
    assert cluster.writes.by_subject[alice_id] == 1


async def test_rest_activity_of_an_offline_subject_is_announced_once_cluster_wide(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(3, offline_threshold_s=1.5, throttle_interval_s=1.0)
    heard = listen(cluster)
    alice, alice_id = await cluster.register("alice")

    async def hit(i: int) -> None:
        resp = await cluster[i % 3].client.get("/api/users/me", headers=bearer(alice))
        assert resp.status == 200

    await asyncio.gather(*(hit(i) for i in range(30)))
    await cluster.settle()
    assert len(heard) == 1
    assert heard[0][1].is_online
    assert heard[0][1].subject.id == alice_id

    # Quiet past the threshold: offline, lastSeen = the real last activity, then back online.
    last = cluster[0].c.clock.now()
    await hit(0)
    await asyncio.sleep(1.8)
    bob, _ = await cluster.register("bob")
    cid = await conversation(cluster, bob, [alice_id])
    seen = (await presence_in(cluster, 1, bearer(bob), cid))[alice_id]
    assert (seen["isOnline"], seen["status"]) == (False, "offline")
    assert abs(epoch(seen["lastSeen"]) - last) < 0.1
    await hit(2)
    await cluster.settle()
    online_events = [r for _, r in heard if r.subject.id == alice_id]
    assert len(online_events) == 2


async def test_guests_are_tracked_like_users_and_expired_links_leave_no_trace(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(3)
    admin = await cluster.admin_token()
    alice, alice_id = await cluster.register("alice")
    cid = await conversation(cluster, alice, [])
    resp = await cluster[0].client.post(
        f"/api/conversations/{cid}/share-links", headers=bearer(alice), json={}
    )
    assert resp.status == 201
    link = (await resp.json())["data"]["id"]
    resp = await cluster[1].client.post(f"/api/anonymous/join/{link}", json={"nickname": "guest"})
    assert resp.status == 201
    joined = await resp.json()
    guest = {"X-Session-Token": joined["sessionToken"]}
    guest_id = joined["participant"]["id"]
    assert joined["participant"]["isAnonymous"] is True

    await cluster[2].client.post("/maintenance/status-metrics/reset", headers=bearer(admin))
    for w in range(3):
        resp = await cluster[w].client.get("/api/users/me", headers=guest)
        assert resp.status == 200
    await cluster.settle()

    async def counted_cluster_wide() -> bool:  # within 1 s of the last request (SPEC §5)
        resp = await cluster[0].client.get("/maintenance/status-metrics", headers=bearer(admin))
        metrics = (await resp.json())["data"]
        return (metrics["totalRequests"], metrics["successfulUpdates"]) == (3, 1)

    await until(counted_cluster_wide, 1.0, what="3 requests and 1 write counted")
    seen = (await presence_in(cluster, 0, bearer(alice), cid))[guest_id]
    assert (seen["isAnonymous"], seen["isOnline"], seen["username"]) == (True, True, "guest")
    assert (await cluster[0].client.get("/api/conversations", headers=guest)).status == 403
    assert (await presence_in(cluster, 1, guest, cid))[alice_id]["isAnonymous"] is False

    # A link that expires: its guest is refused with no presence side effect at all.
    resp = await cluster[0].client.post(
        f"/api/conversations/{cid}/share-links",
        headers=bearer(alice),
        json={"expiresInSeconds": 1},
    )
    short_link = (await resp.json())["data"]["id"]
    resp = await cluster[0].client.post(
        f"/api/anonymous/join/{short_link}", json={"nickname": "late"}
    )
    late = await resp.json()
    late_headers = {"X-Session-Token": late["sessionToken"]}
    await asyncio.sleep(1.1)
    await cluster.settle()
    before = await cluster[0].c.counters.flush_and_read(0)
    for w in range(3):
        resp = await cluster[w].client.get("/api/users/me", headers=late_headers)
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "link_expired"
    resp = await cluster[0].client.post(
        f"/api/anonymous/join/{short_link}", json={"nickname": "later"}
    )
    assert resp.status == 401
    unknown = {"X-Session-Token": "pst_" + "A" * 43}
    assert (await cluster[1].client.get("/api/users/me", headers=unknown)).status == 401
    garbage = {"X-Session-Token": "not a token"}
    assert (await cluster[1].client.get("/api/users/me", headers=garbage)).status == 401
    assert (
        await cluster[1].client.post("/api/anonymous/join/nope", json={"nickname": "x"})
    ).status == 404

    await cluster.settle()
    assert await cluster[0].c.counters.flush_and_read(0) == before
    late_member = f"anon:{late['participant']['id']}"
    redis, keys = cluster[0].redis, cluster[0].keys
    bucket = keys.bucket(late_member)
    assert await redis.zscore(bucket.last_activity, late_member) is None
    assert not await redis.sismember(bucket.online, late_member)
    assert not await redis.exists(bucket.throttle(late_member))
    late_subject = SubjectRef(SubjectKind.ANONYMOUS, late["participant"]["id"])
    stored = (await cluster[0].store.get_presence([late_subject]))[late_subject]
    assert stored.last_active_at is None
    assert not stored.is_online


async def test_manual_status_is_seen_by_others_and_invisible_looks_offline(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2)
    heard = listen(cluster)
    alice, alice_id = await cluster.register("alice")
    bob, _ = await cluster.register("bob")
    cid = await conversation(cluster, bob, [alice_id])
    for status, shown in (("dnd", "dnd"), ("away", "away"), ("invisible", "offline")):
        resp = await cluster[0].client.put(
            "/api/users/me/status", headers=bearer(alice), json={"status": status}
        )
        assert resp.status == 200
        assert (await resp.json())["data"]["manualStatus"] == status
        seen = (await presence_in(cluster, 1, bearer(bob), cid))[alice_id]
        assert seen["status"] == shown
        assert seen["isOnline"] is (shown != "offline")
    await cluster.settle()
    alice_changes = [r.status.value for _, r in heard if r.subject.id == alice_id]
    assert alice_changes == ["online", "dnd", "away", "offline"]
    resp = await cluster[0].client.get("/api/conversations", headers=bearer(bob))
    members = {m["userId"]: m for m in (await resp.json())["data"][0]["members"]}
    assert members[alice_id]["status"] == "offline"


async def test_presence_queries_only_show_people_who_share_a_conversation(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2)
    alice, alice_id = await cluster.register("alice")
    bob, bob_id = await cluster.register("bob")
    _, carol_id = await cluster.register("carol")
    await conversation(cluster, alice, [bob_id])
    resp = await cluster[1].client.get(
        f"/api/users/presence?ids={bob_id},{carol_id},{alice_id}", headers=bearer(alice)
    )
    assert resp.status == 200
    users = (await resp.json())["data"]["users"]
    assert [u["userId"] for u in users] == [bob_id, alice_id]
    resp = await cluster[1].client.get(
        "/api/users/presence?ids=" + ",".join(["x"] * 201), headers=bearer(alice)
    )
    assert resp.status == 400
    # Carol is not a member: she may not look into the conversation.
    carol_token = await cluster[0].c.accounts.token_for("carol@example.test")
    convs = await (await cluster[0].client.get("/api/conversations", headers=bearer(bob))).json()
    cid = convs["data"][0]["id"]
    resp = await cluster[0].client.get(
        f"/api/conversations/{cid}/presence", headers=bearer(carol_token)
    )
    assert resp.status == 403
    resp = await cluster[0].client.get(
        "/api/conversations/nope/presence", headers=bearer(carol_token)
    )
    assert resp.status == 404


async def test_a_deactivated_user_is_refused_once_the_cache_rechecks(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2)
    alice, alice_id = await cluster.register("alice")
    assert (await cluster[0].client.get("/api/users/me", headers=bearer(alice))).status == 200
    await cluster[0].store.set_user_active(alice_id, False)
    # A worker whose cache has not seen the token asks the database, as every worker does at
    # its 30 s recheck (tests/unit/test_authenticator.py drives that with a fake clock).
    resp = await cluster[1].client.get("/api/users/me", headers=bearer(alice))
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "inactive_user"
    resp = await cluster[0].client.post(
        "/api/auth/login", json={"email": "alice@example.test", "password": "password-1"}
    )
    assert resp.status == 401


async def test_a_heartbeat_is_activity_unless_request_tracking_is_off(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2, track_requests=False)
    heard = listen(cluster)
    alice, alice_id = await cluster.register("alice")
    bob, _ = await cluster.register("bob")
    cid = await conversation(cluster, bob, [alice_id])

    resp = await cluster[0].client.post("/api/presence/heartbeat", headers=bearer(alice))
    assert (resp.status, await resp.json()) == (200, {"success": True})
    await cluster.settle()
    assert heard == []
    assert cluster.writes.by_subject.get(alice_id, 0) == 0
    seen = (await presence_in(cluster, 1, bearer(bob), cid))[alice_id]
    assert (seen["isOnline"], seen["lastActiveAt"]) == (False, None)
    refused = await cluster[0].client.post("/api/presence/heartbeat")
    assert refused.status == 401


async def test_a_heartbeat_brings_its_caller_online(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(2)
    heard = listen(cluster)
    alice, alice_id = await cluster.register("alice")
    resp = await cluster[1].client.post("/api/presence/heartbeat", headers=bearer(alice))
    assert resp.status == 200
    await cluster.settle()
    assert [(r.subject.id, r.is_online) for _, r in heard] == [(alice_id, True)]
    assert cluster.writes.by_subject[alice_id] == 1
