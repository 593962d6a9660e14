"""Fitting into a host platform, end to end on real Redis and the real MongoDB-compatible
server with two workers: a real identity provider (JWKS, a rotated key) signs the users'
tokens, a service pushes the users and a conversation in (directory sync), presence flows
between the platform's users, a removed member hears nothing more, and a deactivated user is
disconnected at once and cannot come back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio

from presence.app import REALTIME
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.cluster import Cluster
from tests.support.identity_provider import IdentityProvider
from tests.support.sio import Listener
from tests.support.waiting import until

pytestmark = EVERY_REDIS_MODE


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def push(cluster: Cluster, worker: int, token: str, method: str, path: str,
               body: Any = None) -> tuple[int, Any]:  # fmt: skip
    resp = await cluster[worker].client.request(
        method, "/api/service" + path, headers=bearer(token), json=body
    )
    return resp.status, await resp.json()


def in_room(cluster: Cluster, worker: int, sid: str, room: str) -> bool:
    rooms = cluster[worker].app[REALTIME].sio.manager.rooms.get("/", {})
    return room in rooms and sid in rooms[room]


def dnd_heard(listener: Listener) -> bool:
    return any(s["status"] == "dnd" for s in listener.statuses_of("ada"))


async def platform_cluster(make_cluster: ClusterFactory, provider: IdentityProvider) -> Cluster:
    return await make_cluster(
        2,
        jwt_jwks_url=provider.jwks_url,
        jwt_issuer=provider.issuer,
        jwt_audience=provider.audience,
        jwt_jwks_refresh_s=0.0,
        offline_grace_s=0.2,
    )


async def test_the_platform_pushes_its_users_and_memberships_and_sockets_follow(
    make_cluster: ClusterFactory, provider: IdentityProvider
) -> None:
    cluster = await platform_cluster(make_cluster, provider)
    sync = await cluster[0].c.service_tokens.create("directory", ("directory:write",))
    for uid, name in (("ada", "Ada"), ("bob", "Bob"), ("cy", "Cy")):
        status, body = await push(cluster, 0, sync, "PUT", f"/users/{uid}",
                                  {"username": name, "isActive": True})  # fmt: skip
        assert (status, body["data"]["created"]) == (200, True), body
    ada_token = provider.token("ada")
    provider.rotate("EC")  # the provider rotates; bob's and cy's tokens use the new key
    bob_token, cy_token = provider.token("bob"), provider.token("cy")

    ada, bob, cy = Listener("ada"), Listener("bob"), Listener("cy")
    await ada.connect(str(cluster[0].client.make_url("/")), auth={"token": ada_token})
    await bob.connect(str(cluster[1].client.make_url("/")), auth={"token": bob_token})
    await cy.connect(str(cluster[1].client.make_url("/")), auth={"token": cy_token})
    for listener in (ada, bob, cy):
        await listener.wait_for("presence:snapshot")

    # A conversation pushed in on worker 1: bob's socket (worker 1) and ada's (worker 0) join
    # it at once, each with the room's state.
    status, body = await push(cluster, 1, sync, "PUT", "/conversations/team",
                              {"title": "Team", "memberIds": ["ada", "bob", "cy"]})  # fmt: skip
    assert (status, body["data"]) == (200, {"created": True, "added": 3, "removed": 0}), body
    states = await bob.wait_for("presence:state")
    assert states[0]["conversationId"] == "team"
    seen = {u["userId"]: u["isOnline"] for u in states[0]["users"]}
    assert seen == {"ada": True, "bob": True, "cy": True}
    await ada.wait_for("presence:state")

    await ada.client.emit("presence:set", {"status": "dnd"})
    await until(lambda: dnd_heard(bob) and dnd_heard(cy))

    # bob is removed: he hears nothing more of the room (cy, on his worker, still does).
    status, body = await push(cluster, 0, sync, "PUT", "/conversations/team",
                              {"title": "Team", "memberIds": ["ada", "cy"]})  # fmt: skip
    assert body["data"] == {"created": False, "added": 0, "removed": 1}
    bob_sid = bob.client.get_sid()
    assert bob_sid is not None
    await until(lambda: not in_room(cluster, 1, bob_sid, "conversation:team"))
    heard_by_bob = len(bob.statuses_of("ada"))
    await ada.client.emit("presence:set", {"status": "away"})
    await until(lambda: any(s["status"] == "away" for s in cy.statuses_of("ada")))
    # One emit on worker 1 serves both of its sockets: had bob been addressed, his copy
    # would have left with cy's.
    await asyncio.sleep(0.2)
    assert len(bob.statuses_of("ada")) == heard_by_bob

    # ada is deactivated: her socket is told and closed at once, she goes offline, and her
    # (still valid) platform token is refused on every worker.
    status, body = await push(cluster, 1, sync, "PUT", "/users/ada",
                              {"username": "Ada", "isActive": False})  # fmt: skip
    assert status == 200, body
    await asyncio.wait_for(ada.disconnected.wait(), timeout=5)
    assert any(e["code"] == "inactive_user" for e in ada.events("error"))
    await until(lambda: any(not s["isOnline"] for s in cy.statuses_of("ada")))
    for worker in (0, 1):
        resp = await cluster[worker].client.get("/api/users/me", headers=bearer(ada_token))
        assert resp.status == 401
    again = Listener("ada again")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await again.connect(str(cluster[0].client.make_url("/")), auth={"token": ada_token})
    assert again.connect_error["code"] == "inactive_user"

    status, _ = await push(cluster, 0, sync, "DELETE", "/conversations/team")
    assert status == 200
    status, body = await push(cluster, 0, sync, "DELETE", "/conversations/team")
    assert (status, body["error"]["code"]) == (404, "not_found")
    for listener in (bob, cy):
        await listener.close()
