"""Guarantees 2 and 6: a failed lastActiveAt write is counted and retried by the next activity,
and requests keep being served while the database is down. The database is really stopped."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import pytest

from devstack.database import DatabaseHost, mongo_url_of
from devstack.servers import Server
from presence.config import Settings
from presence.domain import SubjectKind, SubjectRef, to_epoch
from tests.support.cluster import start_cluster


@pytest.fixture
def own_mongo(database_host: DatabaseHost) -> Iterator[Server]:
    server = database_host.mongo_server()
    server.start()
    yield server
    server.cleanup()


async def test_failed_write_is_counted_and_the_next_request_after_recovery_writes(
    settings: Settings, own_mongo: Server
) -> None:
    url = mongo_url_of(own_mongo).replace("=3000", "=1000")
    cluster = await start_cluster(
        dataclasses.replace(settings, mongo_url=url, throttle_interval_s=0.5), 2
    )
    try:
        await cluster.admin_token()
        token, user_id = await cluster.register("carol")
        auth = {"Authorization": f"Bearer {token}"}
        # Seen once on each worker while the database is up: the verified-token cache then
        # lets both serve the user through the outage.
        for w in range(2):
            assert (await cluster[w].client.get("/api/users/me", headers=auth)).status == 200
        await cluster.settle()
        await asyncio.sleep(0.6)  # the window closes

        own_mongo.kill()
        # The request is authenticated from the cache and its activity recorded; reading the
        # profile needs the database, so it answers a clean 503 instead of crashing.
        resp = await cluster[1].client.get("/api/users/me", headers=auth)
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "database_unavailable"
        await cluster.settle()
        failed = cluster[1].c.metrics.db_updates.labels(result="failed")._value.get()
        assert failed == 1
        assert (await cluster[0].client.get("/healthz")).status == 200
        ready = await cluster[0].client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["error"]["message"] == "mongodb down"

        own_mongo.start()
        await asyncio.sleep(0.1)
        last_request = cluster[0].c.clock.now()
        resp = await cluster[0].client.get("/api/users/me", headers=auth)
        assert resp.status == 200
        await cluster.settle()

        subject = SubjectRef(SubjectKind.USER, user_id)
        stored = (await cluster[0].store.get_presence([subject]))[subject]
        assert stored.last_active_at is not None
        assert abs(to_epoch(stored.last_active_at) - last_request) < 1.0
        snapshot = await cluster[0].c.counters.flush_and_read(0)
        assert snapshot.failed_updates == 1
        assert snapshot.successful_updates == 2  # the first request, and the retry after recovery
        assert snapshot.total_requests == (
            snapshot.throttled_requests + snapshot.successful_updates + snapshot.failed_updates
        )
    finally:
        await cluster.close()
