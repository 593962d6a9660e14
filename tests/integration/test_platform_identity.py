"""The host platform's users on real Redis and the real MongoDB-compatible server, two workers,
a real identity provider: its tokens (RS256 and ES256, keys rotated) are accepted over REST and
Socket.IO, its users are provisioned on their first token under the platform's own ids, and
presence flows between them as between any users."""

from __future__ import annotations

from tests.conftest import ClusterFactory
from tests.support.identity_provider import IdentityProvider
from tests.support.sio import Listener
from tests.support.waiting import until


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_platform_users_are_provisioned_and_see_each_other_across_workers(
    make_cluster: ClusterFactory, provider: IdentityProvider
) -> None:
    cluster = await make_cluster(
        2,
        jwt_jwks_url=provider.jwks_url,
        jwt_issuer=provider.issuer,
        jwt_audience=provider.audience,
        jwt_provision=True,
        jwt_jwks_refresh_s=0.0,
    )
    ada = provider.token("platform-user-ada", "Ada")
    resp = await cluster[0].client.get("/api/users/me", headers=bearer(ada))
    body = await resp.json()
    assert resp.status == 200, body
    assert (body["data"]["id"], body["data"]["username"]) == ("platform-user-ada", "Ada")

    rotated = provider.rotate("EC")  # the provider moves to a new key; workers follow
    bob = provider.token("platform-user-bob", "Bob", key=rotated)
    watcher = Listener("bob")
    await watcher.connect(str(cluster[1].client.make_url("/")), auth={"token": bob})
    await watcher.wait_for("presence:snapshot")
    resp = await cluster[1].client.post(
        "/api/conversations",
        headers=bearer(bob),
        json={"title": "platform", "memberIds": ["platform-user-ada"]},
    )
    assert resp.status == 201, await resp.text()

    socket = Listener("ada")
    await socket.connect(str(cluster[0].client.make_url("/")), auth={"token": ada})
    snapshot = (await socket.wait_for("presence:snapshot"))[0]
    assert {u["userId"] for u in snapshot["users"]} == {"platform-user-ada", "platform-user-bob"}
    await socket.client.emit("presence:set", {"status": "dnd"})
    await until(
        lambda: any(s["status"] == "dnd" for s in watcher.statuses_of("platform-user-ada")),
        what="bob hearing ada's status from the other worker",
    )
    await socket.close()
    await watcher.close()
    assert await cluster[0].store.count_users() == 2

    # presence's own HS256 login keeps working beside the platform's tokens.
    own, _ = await cluster.register("carol")
    assert (await cluster[1].client.get("/api/users/me", headers=bearer(own))).status == 200
    # A token of another issuer, or for an id that is not URL-safe, is refused.
    for token in (
        provider.token("platform-user-eve", iss="https://other.test"),
        provider.token("eve/../admin"),
    ):
        resp = await cluster[0].client.get("/api/users/me", headers=bearer(token))
        assert resp.status == 401
    assert await cluster[0].store.count_users() == 3
