"""Session-wide real servers and per-test isolation (a Redis key prefix and a database each)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from presence.config import Settings, load_settings
from tests.support.cluster import Cluster, start_cluster
from tests.support.servers import (
    env_or_none,
    mongo_server,
    mongo_url_of,
    redis_server,
    redis_url_of,
)

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    given = env_or_none("PRESENCE_TEST_REDIS_URL")
    if given is not None:
        yield given
        return
    server = redis_server()
    server.start()
    try:
        yield redis_url_of(server)
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    given = env_or_none("PRESENCE_TEST_MONGO_URL")
    if given is not None:
        yield given
        return
    server = mongo_server()
    server.start()
    try:
        yield mongo_url_of(server)
    finally:
        server.cleanup()


def service_env(redis_url: str, mongo_url: str, **extra: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {
        "PRESENCE_REDIS_URL": redis_url,
        "PRESENCE_MONGO_URL": mongo_url,
        "PRESENCE_MONGO_DB": f"t_{tag}",
        "PRESENCE_REDIS_PREFIX": f"t{tag}:",
        "PRESENCE_JWT_SECRET": JWT_SECRET,
        **extra,
    }


@pytest.fixture
async def settings(redis_url: str, mongo_url: str) -> AsyncIterator[Settings]:
    """Settings for real services, isolated for this test; cleaned up afterwards."""
    loaded = load_settings(service_env(redis_url, mongo_url))
    yield loaded
    redis = Redis.from_url(redis_url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{loaded.redis_prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        await mongo.drop_database(loaded.mongo_db)
    finally:
        await mongo.close()


ClusterFactory = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def make_cluster(settings: Settings) -> AsyncIterator[ClusterFactory]:
    started: list[Cluster] = []

    async def make(count: int = 3, **overrides: Any) -> Cluster:
        import dataclasses

        cluster = await start_cluster(dataclasses.replace(settings, **overrides), count)
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        await cluster.close()
