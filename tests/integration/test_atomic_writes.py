"""The writes that change several keys at once (a worker's exit, an admin's online and offline)
are atomic in every Redis mode, and on a Redis Cluster client that has not met the cluster yet
they run on the caller's event loop: redis-py runs each command queued on a cluster
*transaction* pipeline in a thread with an event loop of its own, so a first discovery made
there leaves the client's connections bound to a loop that is gone, and the next command on
them fails with ``Event loop is closed``."""

from __future__ import annotations

import uuid

from presence.clients import redis_from_url
from presence.clock import SystemClock
from presence.domain import SubjectKind, SubjectRef, milliseconds
from presence.keys import Keys
from presence.metrics import Metrics
from presence.registry import ConnectionRegistry, WorkerRegistry
from presence.routes import RoomRoutes
from tests.conftest import EVERY_REDIS_MODE

pytestmark = EVERY_REDIS_MODE


async def test_a_worker_leaves_at_once_on_a_client_fresh_from_start_up(mode_url: str) -> None:
    keys = Keys(f"t{uuid.uuid4().hex[:8]}:")
    clock = SystemClock()
    client = redis_from_url(mode_url)
    try:
        workers = WorkerRegistry(
            client, keys, clock, Metrics("w0"), "w0", 5.0, RoomRoutes(client, keys, clock, "w0")
        )
        await workers.leave()  # the client's very first command
        assert await workers.heartbeat() is False  # a first beat: nobody knew this worker
        assert await workers.live_workers() == 1
        await workers.leave()
        assert await workers.live_workers() == 0
        assert await client.exists(keys.worker("w0")) == 0
    finally:
        await client.aclose()


async def test_an_admins_online_and_offline_on_a_client_fresh_from_start_up(
    mode_url: str,
) -> None:
    keys = Keys(f"t{uuid.uuid4().hex[:8]}:")
    subject = SubjectRef(SubjectKind.USER, uuid.uuid4().hex[:24])
    bucket = keys.bucket(subject.member)
    now = SystemClock().now()
    client = redis_from_url(mode_url)
    try:
        connections = ConnectionRegistry(client, keys, "w0", 60.0)
        await connections.mark_online(subject, now)  # the client's very first command
        assert await client.sismember(bucket.online, subject.member)
        assert await client.zscore(bucket.last_activity, subject.member) == milliseconds(now)
        await client.zadd(bucket.pending_offline, {subject.member: 1})
        await client.sadd(bucket.away, subject.member)
        assert await connections.mark_offline(subject) == milliseconds(now) / 1000
        assert not await client.sismember(bucket.online, subject.member)
        assert await client.zscore(bucket.pending_offline, subject.member) is None
        assert not await client.sismember(bucket.away, subject.member)
        assert await connections.mark_offline(subject) == milliseconds(now) / 1000
    finally:
        await client.aclose()
