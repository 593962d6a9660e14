"""The service API on real Redis and the real MongoDB-compatible server: a push service asks
for the presence of users and guests by id, with a service token; people's credentials and
services' tokens each stay on their own side; a service call is nobody's activity."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from presence.auth.services import ServiceTokens
from presence.domain import SubjectKind, SubjectRef
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.cluster import Cluster
from tests.support.sio import Listener


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def service_token(cluster: Cluster, name: str, *scopes: str) -> str:
    tokens: ServiceTokens = cluster[0].c.service_tokens
    return await tokens.create(name, scopes)


async def lookup(
    cluster: Cluster, worker: int, token: str, ids: list[str]
) -> tuple[int, dict[str, Any]]:
    resp = await cluster[worker].client.post(
        "/api/service/presence", headers=bearer(token), json={"ids": ids}
    )
    return resp.status, await resp.json()


async def guest_of(cluster: Cluster, owner_token: str, members: list[str]) -> tuple[str, str]:
    """A conversation of the owner with a guest in it: (the guest's id, its session token)."""
    client = cluster[0].client
    resp = await client.post(
        "/api/conversations", headers=bearer(owner_token), json={"title": "t", "memberIds": members}
    )
    cid = (await resp.json())["data"]["id"]
    resp = await client.post(f"/api/conversations/{cid}/share-links", headers=bearer(owner_token))
    link = (await resp.json())["data"]["id"]
    resp = await client.post(f"/api/anonymous/join/{link}", json={"nickname": "visitor"})
    joined = await resp.json()
    return joined["participant"]["id"], joined["sessionToken"]


@EVERY_REDIS_MODE
async def test_a_push_service_learns_who_is_connected_in_the_order_it_asked(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2)
    ann_token, ann = await cluster.register("ann")
    bob_token, bob = await cluster.register("bob")
    _, cy = await cluster.register("cy")
    guest, guest_session = await guest_of(cluster, ann_token, [bob, cy])
    on_socket = Listener("bob")
    await on_socket.connect(str(cluster[1].client.make_url("/")), auth={"token": bob_token})
    await on_socket.wait_for("presence:snapshot")
    # ann is only active over REST (online, no connection); cy never came.
    assert (await cluster[0].client.get("/api/users/me", headers=bearer(ann_token))).status == 200
    hidden = await cluster[0].client.put(
        "/api/users/me/status", headers=bearer(bob_token), json={"status": "invisible"}
    )
    assert hidden.status == 200
    assert (
        await cluster[0].client.get("/api/users/me", headers={"X-Session-Token": guest_session})
    ).status == 200
    token = await service_token(cluster, "push", "presence:read")

    status, body = await lookup(cluster, 1, token, [cy, "nobody", guest, bob, ann, bob])
    assert status == 200, body
    users = body["data"]["users"]
    assert [(u["userId"], u["isAnonymous"]) for u in users] == [
        (cy, False),
        (guest, True),
        (bob, False),
        (ann, False),
    ]
    seen = {u["userId"]: (u["status"], u["isOnline"], u["connected"]) for u in users}
    assert seen == {
        cy: ("offline", False, False),
        guest: ("online", True, False),
        # Invisible: offline to everyone, but connected (a push service must not push).
        bob: ("offline", False, True),
        ann: ("online", True, False),
    }
    assert all("manualStatus" not in u for u in users)
    await on_socket.close()


async def test_a_service_call_is_nobodys_activity(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(2)
    ann_token, ann = await cluster.register("ann")
    assert (await cluster[0].client.get("/api/users/me", headers=bearer(ann_token))).status == 200
    subject = SubjectRef(SubjectKind.USER, ann)
    await cluster.settle()
    registry = cluster[0].c.presence.connections
    before = (await registry.live_states([subject]))[0]
    token = await service_token(cluster, "push", "presence:read")
    for worker in (0, 1, 0):
        status, body = await lookup(cluster, worker, token, [ann])
        assert status == 200, body
    await cluster.settle()
    after = (await registry.live_states([subject]))[0]
    assert after.last_activity == before.last_activity
    metrics = await cluster[1].client.get(
        "/maintenance/status-metrics", headers=bearer(await cluster.admin_token())
    )
    assert (await metrics.json())["data"]["totalRequests"] == 1  # ann's own request only


async def test_each_principal_stays_on_its_own_side(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(2)
    ann_token, ann = await cluster.register("ann")
    _, guest_session = await guest_of(cluster, ann_token, [])
    reader = await service_token(cluster, "push", "presence:read")
    feed = await service_token(cluster, "feed", "events:read")
    client = cluster[1].client
    refusals = {
        "user token on the service API": (bearer(ann_token), 403, "wrong_principal"),
        "guest session on the service API": (
            {"X-Session-Token": guest_session},
            403,
            "wrong_principal",
        ),
        "no credentials": ({}, 401, "auth_required"),
        "a token nobody made": (bearer("psv_" + "x" * 43), 401, "invalid_service_token"),
        "a forged user token": (bearer("e30.e30.e30"), 401, "malformed"),
        "a token without the scope": (bearer(feed), 403, "missing_scope"),
    }
    for case, (headers, status, code) in refusals.items():
        resp = await client.post("/api/service/presence", headers=headers, json={"ids": [ann]})
        body = await resp.json()
        assert (resp.status, body["error"]["code"]) == (status, code), (case, body)
    for path in ("/api/users/me", "/api/conversations", "/maintenance/stats"):
        resp = await client.get(path, headers=bearer(reader))
        body = await resp.json()
        assert (resp.status, body["error"]["code"]) == (403, "wrong_principal"), (path, body)
    resp = await client.get("/api/users/me", headers=bearer("psv_" + "x" * 43))
    assert resp.status == 401


async def test_bad_lookups_are_refused_with_a_code(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(1)
    token = await service_token(cluster, "push", "presence:read")
    cases = {
        "too_many_ids": {"ids": [f"id{i}" for i in range(1001)]},
        "invalid_input": {"ids": []},
        "invalid_json": [],
    }
    for code, payload in cases.items():
        resp = await cluster[0].client.post(
            "/api/service/presence", headers=bearer(token), json=payload
        )
        body = await resp.json()
        assert (resp.status, body["error"]["code"]) == (400, code), (payload, body)
    status, body = await lookup(cluster, 0, token, [f"id{i}" for i in range(1000)])
    assert (status, body["data"]["users"]) == (200, [])


async def test_a_token_is_limited_across_workers_and_revoked_at_once_where_unused(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2, service_rate_limit=5)
    _, ann = await cluster.register("ann")
    token = await service_token(cluster, "push", "presence:read")
    started = time.time()
    answers = await asyncio.gather(*(lookup(cluster, i % 2, token, [ann]) for i in range(30)))
    seconds = int(time.time()) - int(started) + 1  # fixed windows of one second it spanned
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {200, 429}
    assert 5 <= statuses.count(200) <= 5 * seconds, statuses
    refused = [body for status, body in answers if status == 429]
    assert refused and all(b["error"]["code"] == "rate_limited" for b in refused)
    other = await service_token(cluster, "other", "presence:read")
    assert (await lookup(cluster, 0, other, [ann]))[0] == 200  # its own budget
    await cluster[0].c.service_tokens.revoke("other")
    status, body = await lookup(cluster, 1, other, [ann])
    assert (status, body["error"]["code"]) == (401, "invalid_service_token")
