"""Resync after an interrupted pub/sub listener, on real Redis in every mode: the workers'
pub/sub connections are killed (``CLIENT KILL TYPE pubsub``) just before a transition is
published; whatever the listener missed, every socket of the worker gets a fresh
``presence:snapshot {resync: true}`` within 2 s of it subscribing again, and the watcher ends
with the right state."""

from __future__ import annotations

import time
from typing import Any

from presence.clients import redis_client
from presence.config import Settings
from presence.redis_url import RedisMode
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.waiting import until

pytestmark = EVERY_REDIS_MODE


async def kill_pubsub_connections(settings: Settings) -> int:
    """Every pub/sub connection of every data node, as an operator's CLIENT KILL would."""
    assert settings.redis is not None
    client = redis_client(settings.redis)
    try:
        if settings.redis.mode is RedisMode.CLUSTER:
            killed: Any = await client.client_kill_filter(_type="pubsub", target_nodes="all")
            return sum(killed.values()) if isinstance(killed, dict) else int(killed)
        return int(await client.client_kill_filter(_type="pubsub"))
    finally:
        await client.aclose()


async def test_a_worker_that_missed_transitions_resends_every_snapshot(
    settings: Settings, make_cluster: ClusterFactory
) -> None:
    cluster = await make_cluster(2)
    one, one_token, watcher = await cluster.watched_user(watcher_on=1)
    before, heard_before = len(watcher.events("presence:snapshot")), len(watcher.heard)
    killed_at = time.monotonic()
    assert await kill_pubsub_connections(settings) >= 2
    # Published while the listeners are away: worker 1 may never hear it.
    resp = await cluster[0].client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {one_token}"}
    )
    assert resp.status == 200

    def resynced() -> list[dict[str, Any]]:
        return [s for s in watcher.events("presence:snapshot")[before:] if s.get("resync")]

    def seen_online() -> bool | None:
        """What the watcher last heard of ``one``, from a resync snapshot or a status; a resync
        may come before the transition was published, which the listener then hears live."""
        seen = None
        for heard in watcher.heard[heard_before:]:
            if heard.event == "presence:snapshot" and heard.data.get("resync"):
                for user in heard.data["users"]:
                    seen = user["isOnline"] if user["userId"] == one else seen
            elif heard.event == "user:status" and heard.data["userId"] == one:
                seen = heard.data["isOnline"]
        return seen

    await until(lambda: bool(resynced()), timeout_s=5, what="a resync snapshot")
    assert time.monotonic() - killed_at < 2.0 + 2.0  # resubscribed within ~2 s, then 2 s
    await until(lambda: seen_online() is True, timeout_s=5, what="the watcher hearing one online")
    metrics = cluster[1].c.metrics
    assert metrics.resyncs._value.get() >= 1
    assert metrics.resync_sockets._value.get() >= 1
    await watcher.close()
