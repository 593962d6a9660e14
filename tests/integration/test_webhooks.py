"""Webhooks on real Redis in every mode, two workers, a real HTTP receiver: every event of the
feed arrives signed, through a receiver outage, once per event while nothing fails, and an
event a worker took but never acknowledged is delivered by the other."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from presence.clients import redis_client
from presence.config import Settings
from presence.keys import Keys
from presence.webhooks import GROUP
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.cluster import Cluster
from tests.support.receiver import Receiver, group_exists
from tests.support.waiting import until

SECRET = "w" * 40


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def feed_ids(cluster: Cluster) -> list[str]:
    entries: Any = await cluster[0].redis.xrange(cluster[0].keys.events)
    return [e[0].decode() if isinstance(e[0], bytes) else e[0] for e in entries]


async def go_online(cluster: Cluster, worker: int, names: list[str]) -> None:
    """Each a new user with one request: an online transition each."""
    for name in names:
        token, _ = await cluster.register(name, worker)
        resp = await cluster[worker].client.get("/api/users/me", headers=bearer(token))
        assert resp.status == 200


async def start(make_cluster: ClusterFactory, receiver: Receiver, **extra: Any) -> Cluster:
    return await make_cluster(
        2,
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        webhook_max_backoff_s=0.5,
        **extra,
    )


@EVERY_REDIS_MODE
async def test_every_event_arrives_signed_once_and_through_an_outage(
    make_cluster: ClusterFactory,
) -> None:
    receiver = Receiver(SECRET.encode())
    await receiver.start()
    try:
        cluster = await start(make_cluster, receiver)
        # The group is made at the end of the stream by the workers' delivery loops.
        await until(lambda: group_exists(cluster[0].redis, cluster[0].keys.events))
        await go_online(cluster, 0, ["a1", "a2", "a3"])
        await go_online(cluster, 1, ["b1", "b2"])
        await until(lambda: len(receiver.deliveries) >= 5, timeout_s=10)
        assert sorted(receiver.event_ids()) == sorted(await feed_ids(cluster))
        assert all(receiver.verified(d) for d in receiver.deliveries)
        first = receiver.deliveries[0].event
        assert set(first) == {"id", "subjectId", "isAnonymous", "status", "isOnline", "at"}
        assert first["id"] == receiver.deliveries[0].event_id and first["status"] == "online"

        await receiver.stop()
        await go_online(cluster, 0, ["c1", "c2"])
        await go_online(cluster, 1, ["d1"])
        await asyncio.sleep(2.0)  # delivery fails and backs off meanwhile
        failed = sum(w.c.metrics.webhook_failed._value.get() for w in cluster.workers)
        assert failed >= 1
        await receiver.start()
        every = await feed_ids(cluster)
        await until(lambda: set(receiver.event_ids()) == set(every), timeout_s=10)
        assert all(receiver.verified(d) for d in receiver.deliveries)
        # Nothing failed half-way (a refused connection delivers nothing): once each.
        assert max(Counter(receiver.event_ids()).values()) == 1
        pending = await cluster[0].redis.xpending(cluster[0].keys.events, GROUP)
        assert pending["pending"] == 0
    finally:
        await receiver.stop()


async def test_an_event_taken_but_never_acknowledged_is_delivered_by_another_worker(
    settings: Settings, make_cluster: ClusterFactory
) -> None:
    """A worker that read an event and died holding it (a consumer of the group that reads
    and never acknowledges) leaves it pending; once idle past the claim time, a live worker
    claims and delivers it."""
    assert settings.redis is not None
    redis = redis_client(settings.redis)
    stream = Keys(settings.redis_prefix, settings.redis_buckets).events
    receiver = Receiver(SECRET.encode())
    await receiver.start()
    try:
        await redis.xgroup_create(stream, GROUP, id="$", mkstream=True)
        for subject in ("x", "y"):
            await redis.xadd(stream, {"subjectId": subject, "isAnonymous": "0",
                                      "status": "online", "isOnline": "1",
                                      "at": "2026-01-01T00:00:00.000Z"})  # fmt: skip
        taken: Any = await redis.xreadgroup(GROUP, "dead-worker", {stream: ">"}, count=10)
        assert [len(entries) for _, entries in taken] == [2]
        await start(make_cluster, receiver, webhook_claim_after_s=1.0)
        await until(lambda: len(receiver.deliveries) >= 2, timeout_s=10)
        assert sorted(d.event["subjectId"] for d in receiver.deliveries) == ["x", "y"]
        assert all(receiver.verified(d) for d in receiver.deliveries)
        await until(
            lambda: _pending(redis, stream),
            timeout_s=5,
            what="the claimed events acknowledged",
        )
    finally:
        await receiver.stop()
        await redis.aclose()


async def _pending(redis: Redis, stream: str) -> bool:
    summary = await redis.xpending(stream, GROUP)
    return bool(summary["pending"] == 0)
