"""Session-wide real servers and per-test isolation (a Redis key prefix and a database each),
and the check that a run leaves no process behind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from devstack import leaks
from devstack.database import DatabaseHost, mongo_url_of
from devstack.redis_modes import MODES, RedisTopology, redis_topology
from devstack.servers import env_or_none, redis_server, redis_url_of
from presence.clients import redis_from_url
from presence.config import Settings, load_settings
from tests.support.cluster import Cluster, start_cluster
from tests.support.identity_provider import IdentityProvider

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
_RUN_MARK = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RUN_MARK] = leaks.mark_this_run()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run when a process it started outlived it (every fixture is torn down by now)."""
    mark = session.config.stash.get(_RUN_MARK, None)
    if mark is None:
        return
    left = leaks.reap(mark)
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  pid {s.pid}: {s.command}" for s in left]
    message = "\n".join(["\nprocesses started by this run outlived it (now killed):", *lines])
    if reporter is not None:
        reporter.write_line(message, red=True)
    else:
        print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def database_host() -> Iterator[DatabaseHost]:
    """mongod from PATH, else one PostgreSQL cluster for FerretDB servers, for the session."""
    host = DatabaseHost()
    host.start()
    try:
        yield host
    finally:
        host.stop()


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


class RedisModes:
    """The Sentinel and Cluster topologies, each started the first time a test asks for it
    and stopped at the end of the session."""

    def __init__(self) -> None:
        self.started: dict[str, RedisTopology] = {}

    def url(self, mode: str) -> str:
        if mode not in self.started:
            topology = redis_topology(mode)
            try:
                topology.start()
            except BaseException:
                topology.cleanup()
                raise
            self.started[mode] = topology
        return self.started[mode].url

    def cleanup(self) -> None:
        for topology in self.started.values():
            topology.cleanup()


@pytest.fixture(scope="session")
def redis_modes() -> Iterator[RedisModes]:
    modes = RedisModes()
    try:
        yield modes
    finally:
        modes.cleanup()


@pytest.fixture
def redis_mode(request: pytest.FixtureRequest) -> str:
    """``standalone``, unless the test is parametrised over modes (``EVERY_REDIS_MODE``)."""
    return str(getattr(request, "param", "standalone"))


# pytestmark of a module whose tests run once per Redis mode, on real topologies of each.
EVERY_REDIS_MODE = pytest.mark.parametrize("redis_mode", MODES, indirect=True)


@pytest.fixture
def mode_url(redis_mode: str, redis_url: str, redis_modes: RedisModes) -> str:
    """The PRESENCE_REDIS_URL of the test's Redis mode, as an operator writes it."""
    return redis_url if redis_mode == "standalone" else redis_modes.url(redis_mode)


@pytest.fixture(scope="session")
def mongo_url(request: pytest.FixtureRequest) -> Iterator[str]:
    given = env_or_none("PRESENCE_TEST_MONGO_URL")
    if given is not None:
        yield given
        return
    host: DatabaseHost = request.getfixturevalue("database_host")
    server = host.mongo_server()
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
async def settings(mode_url: str, mongo_url: str) -> AsyncIterator[Settings]:
    """Settings for real services, isolated for this test; cleaned up afterwards."""
    loaded = load_settings(service_env(mode_url, mongo_url))
    yield loaded
    redis = redis_from_url(mode_url)
    try:
        async for key in redis.scan_iter(match=f"{loaded.redis_prefix}*", count=1000):
            await redis.delete(key)
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


@pytest.fixture
async def provider() -> AsyncIterator[IdentityProvider]:
    """A host platform's identity provider: a real HTTP server publishing its JWKS."""
    started = IdentityProvider()
    await started.start()
    yield started
    await started.stop()
