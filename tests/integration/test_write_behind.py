"""Transitions at Redis speed (SPEC §13): a transition is announced from Redis and the worker's
cache without waiting on the database, which gets the online flag and ``lastSeen`` behind it,
in bulks, and never loses them: not to an outage (the database is really stopped), and not to
the death of the worker that decided them (the maintenance leader writes what it journaled)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from devstack.database import DatabaseHost, mongo_url_of
from devstack.servers import Server
from presence.config import Settings
from presence.domain import SubjectKind, SubjectRef, to_epoch
from presence.maintenance import sweeper
from tests.support.cluster import Cluster, start_cluster
from tests.support.sio import Listener
from tests.support.waiting import until

GRACE_S = 0.3


@pytest.fixture
def own_mongo(database_host: DatabaseHost) -> Iterator[Server]:
    server = database_host.mongo_server()
    server.start()
    yield server
    server.cleanup()


async def watched(cluster: Cluster) -> tuple[SubjectRef, str, Listener]:
    """A user ``one`` and a watcher ``two`` on worker 1 who shares a conversation with it."""
    one, token_one, watcher = await cluster.watched_user()
    return SubjectRef(SubjectKind.USER, one), token_one, watcher


async def open_tab(cluster: Cluster, token: str) -> Listener:
    tab = Listener("one")
    await tab.connect(str(cluster[0].client.make_url("/")), auth={"token": token})
    await tab.wait_for("authenticated")
    return tab


async def test_transitions_are_announced_while_the_database_is_down_and_written_after(
    settings: Settings, own_mongo: Server
) -> None:
    url = mongo_url_of(own_mongo).replace("=3000", "=1000")
    cluster = await start_cluster(
        dataclasses.replace(settings, mongo_url=url, offline_grace_s=GRACE_S), 2
    )
    watcher: Listener | None = None
    try:
        one, token_one, watcher = await watched(cluster)
        tab = await open_tab(cluster, token_one)
        await watcher.wait_status(one.id, 1)
        await tab.close()
        await watcher.wait_status(one.id, 2)
        await cluster.settle()

        own_mongo.kill()
        # Online, offline, online, offline: each announced as promptly as with the database up.
        for heard in range(3, 7):
            started = time.monotonic()
            if heard % 2:
                tab = await open_tab(cluster, token_one)
            else:
                closed_at = time.time()
                await tab.close()
            status = (await watcher.wait_status(one.id, heard, timeout_s=5))[-1]
            took = time.monotonic() - started
            assert status["isOnline"] is bool(heard % 2)
            assert took < (GRACE_S if heard % 2 == 0 else 0) + 0.9, (heard, took)
        offline = watcher.statuses_of(one.id)[-1]
        assert abs(from_iso(offline["lastSeen"]) - closed_at) < 0.2
        writes = cluster[0].c.presence.writes
        await until(
            lambda: (
                cluster[0].c.metrics.mongo_errors.labels(operation="write_behind")._value.get() > 0
            ),
            10,
            what="a failed bulk",
        )
        assert writes.queued(one) is not None  # kept for the database's return

        own_mongo.start()
        await until(lambda: len(writes) == 0, 20, what="the queue written")
        stored = (await cluster[0].store.get_presence([one]))[one]
        assert stored.is_online is False
        assert stored.last_seen is not None
        # The last offline's lastSeen: written as announced, to the millisecond.
        assert abs(to_epoch(stored.last_seen) - from_iso(offline["lastSeen"])) < 0.002
        journal = cluster[0].keys.bucket(one.member).unwritten
        assert await cluster[0].redis.zcard(journal) == 0
    finally:
        if watcher is not None:
            await watcher.close()
        await cluster.close()


async def test_the_offlines_of_a_worker_that_never_wrote_them_are_written_by_the_leader(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeper, "UNWRITTEN_AFTER_S", 0.5)
    # Worker 0's queue never flushes: what the database misses when it dies before a flush.
    cluster = await start_cluster(
        dataclasses.replace(settings, offline_grace_s=GRACE_S, maintenance_interval_s=0.2),
        2,
        overrides=[{"write_behind_s": 3600.0}],
    )
    watcher: Listener | None = None
    try:
        one, token_one, watcher = await watched(cluster)
        tab = await open_tab(cluster, token_one)
        await watcher.wait_status(one.id, 1)
        await tab.close()
        offline = (await watcher.wait_status(one.id, 2))[-1]
        assert offline["isOnline"] is False
        assert cluster[0].c.presence.writes.queued(one) is not None
        journal = cluster[0].keys.bucket(one.member).unwritten
        assert await cluster[0].redis.zcard(journal) == 1

        async def written() -> bool:
            stored = (await cluster[1].store.get_presence([one]))[one]
            return not stored.is_online and stored.last_seen is not None

        await until(written, 10, what="the leader's write")
        stored = (await cluster[1].store.get_presence([one]))[one]
        assert stored.last_seen is not None
        assert abs(to_epoch(stored.last_seen) - from_iso(offline["lastSeen"])) < 0.002

        async def settled() -> bool:
            return await cluster[0].redis.zcard(journal) == 0

        await until(settled, 5, what="the journal settled")
    finally:
        if watcher is not None:
            await watcher.close()
        await cluster.close()


def from_iso(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()
