"""Clients for the external services, built from their URLs.

Redis comes in three modes, and one parser reads every form of ``PRESENCE_REDIS_URL``
(SPEC §10). Every Redis client a worker opens — commands, the Socket.IO message queue and its
pub/sub listener — is built from that one :class:`RedisConfig`, with the same timeouts and retry
policy:

* ``redis://[[user]:password@]host:port[/db]``, ``rediss://…`` (TLS), ``unix:///path?db=N``
* ``redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]``: the sentinels;
  the client asks them for the master of ``service`` and follows a failover by itself.
* ``redis+cluster://[[user]:password@]host:port[,host:port…]``: seed nodes of a Redis Cluster;
  the client discovers the rest and follows slot moves and failovers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from presence.redis_url import RedisConfig, RedisMode, parse_redis_url

# A request that misses the local cache waits on Redis; a dead Redis must cost it well under a
# second, not redis-py 8's default of ten retries with backoff up to 1 s each.
_RETRY = Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=2)
_TIMEOUTS: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 5.0,
    "health_check_interval": 30,
}
# redis-py's default pool raises "Too many connections" past 100 connections in use, which a
# burst of first requests (one round trip each) reaches at once; a blocking pool makes the burst
# queue for a connection instead, for at most POOL_WAIT_S.
POOL_SIZE = 100
POOL_WAIT_S = 2.0
# A cluster moves a slot or promotes a replica in about a second: a command retries across
# that (following MOVED/ASK and the new topology) rather than failing at once.
_CLUSTER_RETRY = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=6)


class _WriteOnClosedIsConnectionError(AbstractConnection):
    """A write on a connection that another task has just closed (a failover tears the pool
    down while a command or a reconnect's handshake is on its way) is a ``ConnectionError``,
    which every retry policy and caller handles. redis-py 8.1 lets it out as the transport's
    ``AttributeError`` or ``TypeError`` instead (redis-py #4287, fixed after 8.1.0); the
    connection's state, not the exception's text, says which case it is."""

    async def _send_packed_command(self, command: Iterable[bytes]) -> None:
        writer = self._writer
        if writer is None or writer.transport.is_closing():
            raise RedisConnectionError("connection closed while a command was being written")
        await super()._send_packed_command(command)


class _Connection(_WriteOnClosedIsConnectionError, Connection):
    pass


class _SSLConnection(_WriteOnClosedIsConnectionError, SSLConnection):
    pass


class _UnixConnection(_WriteOnClosedIsConnectionError, UnixDomainSocketConnection):
    pass


class _SentinelConnection(_WriteOnClosedIsConnectionError, SentinelManagedConnection):
    pass


_STANDALONE_CONNECTIONS: dict[str, type[AbstractConnection]] = {
    "redis": _Connection,
    "rediss": _SSLConnection,
    "unix": _UnixConnection,
}


class _SentinelMaster(Redis):
    """The master a Sentinel names, closing the connections to the sentinels with its own."""

    sentinels: list[Redis]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in getattr(self, "sentinels", []):
            await sentinel.aclose()


def redis_client(config: RedisConfig) -> Redis:
    """A client of the configured mode; the commands, the message queue's publisher and its
    listener each get one."""
    if config.mode is RedisMode.STANDALONE:
        pool = BlockingConnectionPool.from_url(
            config.url,
            connection_class=_STANDALONE_CONNECTIONS[config.url.partition("://")[0].lower()],
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT_S,
            retry=_RETRY,
            **_TIMEOUTS,
        )
        return Redis.from_pool(pool)
    if config.mode is RedisMode.SENTINEL:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(config.nodes),
            sentinel_kwargs={"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
            db=config.db,
            retry=_RETRY,
            username=config.username,
            password=config.password,
            **_TIMEOUTS,
        )
        assert config.service is not None
        master: _SentinelMaster = sentinel.master_for(
            config.service,
            redis_class=_SentinelMaster,
            connection_class=_SentinelConnection,
        )
        master.sentinels = list(sentinel.sentinels)
        for asked in master.sentinels:  # their clients take no connection class; connected lazily
            asked.connection_pool.connection_class = _Connection
        return master
    cluster = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in config.nodes],
        max_connections=POOL_SIZE,
        retry=_CLUSTER_RETRY,
        username=config.username,
        password=config.password,
        **_TIMEOUTS,
    )
    # RedisCluster takes no connection class: every node it creates (the seeds now, the
    # discovered ones at its first command) is made from these shared keyword arguments.
    cluster.nodes_manager.connection_kwargs["connection_class"] = _Connection
    for node in cluster.nodes_manager.startup_nodes.values():
        node.connection_class = _Connection
    # The cluster client speaks the same commands for every key presence uses (each script
    # and pipeline stays within one slot); it is typed as one client throughout.
    return cast(Redis, cluster)


def redis_from_url(url: str) -> Redis:
    return redis_client(parse_redis_url(url))
