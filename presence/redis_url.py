"""``PRESENCE_REDIS_URL``, parsed once: which Redis mode, which nodes, which credentials.
No I/O here; :mod:`presence.clients` builds the clients from the result."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SENTINEL_PORT = 26379
REDIS_PORT = 6379


class RedisMode(enum.StrEnum):
    STANDALONE = "standalone"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """One parsed ``PRESENCE_REDIS_URL``."""

    mode: RedisMode
    url: str
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels, or cluster seed nodes
    service: str | None = None  # Sentinel: the monitored master's name
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def is_cluster(self) -> bool:
        return self.mode is RedisMode.CLUSTER


def parse_redis_url(url: str) -> RedisConfig:
    """Raise ValueError naming what is wrong with ``url``."""
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        return RedisConfig(RedisMode.STANDALONE, url)
    if scheme not in ("redis+sentinel", "redis+cluster"):
        raise ValueError(
            "must start with redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://"
        )
    parts = urlsplit(url)
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        credentials, _, netloc = netloc.rpartition("@")
        user, _, secret = credentials.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    sentinel = scheme == "redis+sentinel"
    nodes = tuple(
        _host_port(item, SENTINEL_PORT if sentinel else REDIS_PORT) for item in netloc.split(",")
    )
    path = [p for p in parts.path.split("/") if p]
    if not sentinel:
        if path:
            raise ValueError("redis+cluster:// URLs name seed nodes only (a cluster has db 0)")
        return RedisConfig(RedisMode.CLUSTER, url, nodes, username=username, password=password)
    if not path:
        raise ValueError("redis+sentinel:// URLs need a service name: .../<service>[/<db>]")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("redis+sentinel:// URLs end in /<service>[/<db>], db a number")
    db = int(path[1]) if len(path) == 2 else 0
    return RedisConfig(RedisMode.SENTINEL, url, nodes, path[0], db, username, password)


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    host, colon, port = item.strip().rpartition(":")
    if not colon:
        host, port = item.strip(), ""
    if not host:
        raise ValueError(f"{item!r} is not host:port")
    if port and not port.isdigit():
        raise ValueError(f"{item!r}: the port is not a number")
    return host, int(port or default_port)
