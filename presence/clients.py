"""Clients for the external services, built from their URLs."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff

# A request that misses the local cache waits on Redis; a dead Redis must cost it well under a
# second, not redis-py 8's default of ten retries with backoff up to 1 s each.
_RETRY = Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=2)
_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 5.0,
    "health_check_interval": 30,
    "retry": _RETRY,
}
# redis-py's default pool raises "Too many connections" past 100 connections in use, which a
# burst of first requests (one round trip each) reaches at once; a blocking pool makes the burst
# queue for a connection instead, for at most POOL_WAIT_S.
POOL_SIZE = 100
POOL_WAIT_S = 2.0


def redis_from_url(url: str) -> Redis:
    """``redis://``, ``rediss://``, ``unix://`` or
    ``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]``."""
    if not url.startswith("redis+sentinel://"):
        pool = BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=POOL_WAIT_S, **_OPTIONS
        )
        return Redis.from_pool(pool)
    parts = urlsplit(url)
    netloc = parts.netloc
    password = None
    if "@" in netloc:
        credentials, _, netloc = netloc.rpartition("@")
        password = unquote(credentials.partition(":")[2]) or None
    hosts = []
    for item in netloc.split(","):
        host, _, port = item.partition(":")
        hosts.append((host, int(port or 26379)))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("redis+sentinel:// URLs need a service name: .../<service>[/<db>]")
    service, db = path[0], int(path[1]) if len(path) > 1 else 0
    sentinel = Sentinel(hosts, password=password, db=db, **_OPTIONS)  # type: ignore[no-untyped-call]
    master: Redis = sentinel.master_for(service)
    return master
