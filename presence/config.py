"""Settings: one frozen object read from the environment and validated at start-up.

Every duration accepts fractions (``0.5``) so tests can shrink all timers. A bad value stops
start-up with :class:`ConfigError`, whose message is one line naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, Literal

from presence.redis_url import RedisConfig, RedisMode, parse_redis_url

LogFormat = Literal["json", "text"]
# How Socket.IO messages reach other workers (see presence.realtime.routed).
MessageQueue = Literal["routed", "broadcast"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_MIN_WEBHOOK_SECRET_BYTES = 32
_MIN_JWT_SECRET_BYTES = 32


class ConfigError(ValueError):
    """An invalid setting; ``str(error)`` is a single line that names the variable."""


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"  # noqa: S104 - a server listens on every interface by default
    port: int = 3000
    redis_url: str | None = None
    mongo_url: str | None = None
    mongo_db: str = "presence"
    # Operations in one bulk call. Small bulks keep each round trip short; some MongoDB-compatible
    # servers (FerretDB) hang on a bulk larger than their connection pool.
    mongo_max_batch: int = 100
    jwt_secret: str = field(default="", repr=False)
    jwt_ttl_s: float = 86400.0
    # The host platform's tokens (presence.auth.platform): on when the JWKS URL is set.
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_subject_claim: str = "sub"
    jwt_name_claim: str = "name"
    jwt_provision: bool = False
    jwt_jwks_ttl_s: float = 300.0
    jwt_jwks_refresh_s: float = 30.0
    throttle_interval_s: float = 60.0
    maintenance_interval_s: float = 15.0
    offline_threshold_s: float = 300.0
    offline_grace_s: float = 5.0
    # No user activity this long makes a connected subject away (presence.choices); 0: never.
    idle_away_s: float = 300.0
    # A conversation with more members than this is large: a member's transition is not pushed
    # to the whole room, which gets its online count instead (presence.rooms).
    room_fanout_limit: int = 500
    cache_cleanup_interval_s: float = 300.0
    cache_max_age_s: float = 600.0
    leader_ttl_s: float = 15.0
    worker_ttl_s: float = 15.0
    ping_interval_s: float = 25.0
    ping_timeout_s: float = 20.0
    max_connections: int = 20000
    auth_deadline_s: float = 10.0
    auth_cache_size: int = 10000
    # Online flags and lastSeen reach MongoDB in one bulk this often (presence.write_behind).
    write_behind_s: float = 0.25
    # Subjects whose name, manual status and conversations a worker keeps (presence.profiles).
    profile_cache_size: int = 100_000
    profile_cache_ttl_s: float = 60.0
    track_requests: bool = True
    auth_failures_per_address: int = 20
    auth_failures_per_account: int = 5
    # Calls per second one service token may make, across the cluster (presence.auth.services).
    service_rate_limit: int = 100
    # The change feed (presence.feed): entries the stream keeps, and how long a read waits.
    events_maxlen: int = 100_000
    events_wait_s: float = 25.0
    # Webhooks (presence.webhooks): on when both the URL and the secret are set.
    webhook_url: str | None = None
    webhook_secret: str = field(default="", repr=False)
    webhook_timeout_s: float = 5.0
    webhook_max_backoff_s: float = 60.0
    webhook_claim_after_s: float = 30.0
    trusted_proxies: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    worker_id: str = ""
    cors_origins: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_format: LogFormat = "json"
    redis_prefix: str = "presence:"
    # Slots the cluster-wide collections are spread over (see presence.keys).
    redis_buckets: int = 1
    message_queue: MessageQueue = "routed"

    @property
    def embedded(self) -> bool:
        """No external services: fakeredis and the in-memory store, one worker, nothing kept."""
        return self.redis_url is None and self.mongo_url is None

    @cached_property
    def redis(self) -> RedisConfig | None:
        """``redis_url`` parsed, for every client a worker opens (None in embedded mode)."""
        return None if self.redis_url is None else parse_redis_url(self.redis_url)

    def __repr__(self) -> str:
        # Connection strings may carry passwords; the JWT secret never leaves the process.
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        for name in ("redis_url", "mongo_url"):
            if shown[name]:
                shown[name] = _redact_url(shown[name])
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read ``PRESENCE_*`` variables; raise :class:`ConfigError` on the first bad one."""
    source = os.environ if env is None else env
    reader = _Reader(source)
    redis_url = reader.optional_str("PRESENCE_REDIS_URL")
    mongo_url = reader.optional_str("PRESENCE_MONGO_URL")
    if (redis_url is None) != (mongo_url is None):
        missing = "PRESENCE_MONGO_URL" if mongo_url is None else "PRESENCE_REDIS_URL"
        raise ConfigError(
            f"{missing}: must be set too (set both service URLs, or neither for embedded mode)"
        )
    redis: RedisConfig | None = None
    if redis_url is not None:
        try:
            redis = parse_redis_url(redis_url)
        except ValueError as exc:
            raise ConfigError(f"PRESENCE_REDIS_URL: {exc}") from None
    if mongo_url is not None and not mongo_url.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("PRESENCE_MONGO_URL: must start with mongodb:// or mongodb+srv://")
    embedded = redis_url is None

    jwt_secret = source.get("PRESENCE_JWT_SECRET", "")
    if not embedded and not jwt_secret:
        raise ConfigError("PRESENCE_JWT_SECRET: required outside embedded mode")
    if jwt_secret and len(jwt_secret.encode()) < _MIN_JWT_SECRET_BYTES:
        raise ConfigError(
            f"PRESENCE_JWT_SECRET: must be at least {_MIN_JWT_SECRET_BYTES} bytes long"
        )

    cors_raw = reader.optional_str("PRESENCE_CORS_ORIGINS")
    if cors_raw is None:
        cors: tuple[str, ...] = ("*",) if embedded else ()
    else:
        cors = tuple(o.strip() for o in cors_raw.split(",") if o.strip())

    log_level = source.get("PRESENCE_LOG_LEVEL", "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise ConfigError(f"PRESENCE_LOG_LEVEL: must be one of {', '.join(_LOG_LEVELS)}")
    message_queue = source.get("PRESENCE_MESSAGE_QUEUE", "routed").strip() or "routed"
    if message_queue not in ("routed", "broadcast"):
        raise ConfigError(
            f"PRESENCE_MESSAGE_QUEUE: expected routed or broadcast, got {message_queue!r}"
        )
    log_format = source.get("PRESENCE_LOG_FORMAT", "json")
    if log_format not in ("json", "text"):
        raise ConfigError("PRESENCE_LOG_FORMAT: must be json or text")

    settings = Settings(
        host=source.get("PRESENCE_HOST", "0.0.0.0"),  # noqa: S104
        port=reader.integer("PRESENCE_PORT", 3000, low=0, high=65535),
        redis_url=redis_url,
        mongo_url=mongo_url,
        mongo_db=reader.name("PRESENCE_MONGO_DB", "presence"),
        mongo_max_batch=reader.integer("PRESENCE_MONGO_MAX_BATCH", 100, low=1, high=100_000),
        jwt_secret=jwt_secret,
        jwt_ttl_s=reader.duration("PRESENCE_JWT_TTL_S", 86400),
        **_platform_settings(reader),
        throttle_interval_s=reader.duration("PRESENCE_THROTTLE_INTERVAL_S", 60),
        maintenance_interval_s=reader.duration("PRESENCE_MAINTENANCE_INTERVAL_S", 15),
        offline_threshold_s=reader.duration("PRESENCE_OFFLINE_THRESHOLD_S", 300),
        offline_grace_s=reader.duration("PRESENCE_OFFLINE_GRACE_S", 5, allow_zero=True),
        idle_away_s=reader.duration("PRESENCE_IDLE_AWAY_S", 300, allow_zero=True),
        room_fanout_limit=reader.integer("PRESENCE_ROOM_FANOUT_LIMIT", 500, low=1),
        cache_cleanup_interval_s=reader.duration("PRESENCE_CACHE_CLEANUP_INTERVAL_S", 300),
        cache_max_age_s=reader.duration("PRESENCE_CACHE_MAX_AGE_S", 600),
        leader_ttl_s=reader.duration("PRESENCE_LEADER_TTL_S", 15),
        worker_ttl_s=reader.duration("PRESENCE_WORKER_TTL_S", 15),
        ping_interval_s=reader.duration("PRESENCE_PING_INTERVAL_S", 25),
        ping_timeout_s=reader.duration("PRESENCE_PING_TIMEOUT_S", 20),
        max_connections=reader.integer("PRESENCE_MAX_CONNECTIONS", 20000, low=1),
        auth_deadline_s=reader.duration("PRESENCE_AUTH_DEADLINE_S", 10),
        auth_cache_size=reader.integer("PRESENCE_AUTH_CACHE_SIZE", 10000, low=0),
        write_behind_s=reader.duration("PRESENCE_WRITE_BEHIND_S", 0.25),
        profile_cache_size=reader.integer("PRESENCE_PROFILE_CACHE_SIZE", 100_000, low=0),
        profile_cache_ttl_s=reader.duration("PRESENCE_PROFILE_CACHE_TTL_S", 60, allow_zero=True),
        track_requests=reader.boolean("PRESENCE_TRACK_REQUESTS", True),
        auth_failures_per_address=reader.integer("PRESENCE_AUTH_FAILURES_PER_ADDRESS", 20, low=1),
        auth_failures_per_account=reader.integer("PRESENCE_AUTH_FAILURES_PER_ACCOUNT", 5, low=1),
        service_rate_limit=reader.integer("PRESENCE_SERVICE_RATE_LIMIT", 100, low=1),
        events_maxlen=reader.integer("PRESENCE_EVENTS_MAXLEN", 100_000, low=1),
        events_wait_s=reader.duration("PRESENCE_EVENTS_WAIT_S", 25, allow_zero=True),
        **_webhook_settings(reader, source),
        trusted_proxies=reader.networks("PRESENCE_TRUSTED_PROXIES", "127.0.0.0/8,::1/128"),
        worker_id=source.get("PRESENCE_WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}",
        cors_origins=cors,
        log_level=log_level,
        log_format=log_format,  # type: ignore[arg-type]  # checked just above
        redis_prefix=reader.name("PRESENCE_REDIS_PREFIX", "presence:"),
        redis_buckets=reader.integer(
            "PRESENCE_REDIS_BUCKETS", _default_buckets(redis), low=1, high=1024
        ),
        message_queue=message_queue,  # type: ignore[arg-type]  # checked above
    )
    _check_relations(settings)
    return settings


def _platform_settings(reader: _Reader) -> dict[str, Any]:
    url = reader.optional_str("PRESENCE_JWT_JWKS_URL")
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError("PRESENCE_JWT_JWKS_URL: must start with http:// or https://")
    provision = reader.boolean("PRESENCE_JWT_PROVISION", False)
    if provision and url is None:
        raise ConfigError("PRESENCE_JWT_PROVISION: needs PRESENCE_JWT_JWKS_URL")
    return {
        "jwt_jwks_url": url,
        "jwt_issuer": reader.optional_str("PRESENCE_JWT_ISSUER"),
        "jwt_audience": reader.optional_str("PRESENCE_JWT_AUDIENCE"),
        "jwt_subject_claim": reader.name("PRESENCE_JWT_SUBJECT_CLAIM", "sub"),
        "jwt_name_claim": reader.name("PRESENCE_JWT_NAME_CLAIM", "name"),
        "jwt_provision": provision,
        "jwt_jwks_ttl_s": reader.duration("PRESENCE_JWT_JWKS_TTL_S", 300),
        "jwt_jwks_refresh_s": reader.duration("PRESENCE_JWT_JWKS_REFRESH_S", 30, allow_zero=True),
    }


def _webhook_settings(reader: _Reader, source: Mapping[str, str]) -> dict[str, Any]:
    url = reader.optional_str("PRESENCE_WEBHOOK_URL")
    secret = source.get("PRESENCE_WEBHOOK_SECRET", "")
    if url is None and not secret:
        return {}
    if url is None:
        raise ConfigError("PRESENCE_WEBHOOK_URL: required with PRESENCE_WEBHOOK_SECRET")
    if not secret:
        raise ConfigError("PRESENCE_WEBHOOK_SECRET: required with PRESENCE_WEBHOOK_URL")
    if not url.startswith(("http://", "https://")):
        raise ConfigError("PRESENCE_WEBHOOK_URL: must start with http:// or https://")
    if len(secret.encode()) < _MIN_WEBHOOK_SECRET_BYTES:
        raise ConfigError(
            f"PRESENCE_WEBHOOK_SECRET: must be at least {_MIN_WEBHOOK_SECRET_BYTES} bytes"
        )
    return {
        "webhook_url": url,
        "webhook_secret": secret,
        "webhook_timeout_s": reader.duration("PRESENCE_WEBHOOK_TIMEOUT_S", 5),
        "webhook_max_backoff_s": reader.duration("PRESENCE_WEBHOOK_MAX_BACKOFF_S", 60),
        "webhook_claim_after_s": reader.duration("PRESENCE_WEBHOOK_CLAIM_AFTER_S", 30),
    }


def _check_relations(s: Settings) -> None:
    # The local throttle cache is what lets a busy subject skip Redis; a subject active once per
    # window must never look inactive, so the offline threshold must cover a whole window.
    if s.offline_threshold_s < s.throttle_interval_s:
        raise ConfigError(
            "PRESENCE_OFFLINE_THRESHOLD_S: must be at least PRESENCE_THROTTLE_INTERVAL_S"
        )
    # SPEC §13: the database has a transition within 1 s.
    if s.write_behind_s > 1:
        raise ConfigError("PRESENCE_WRITE_BEHIND_S: must be at most 1 second")
    # Entries younger than the window are still useful; dropping them would cost Redis trips.
    if s.cache_max_age_s < s.throttle_interval_s:
        raise ConfigError("PRESENCE_CACHE_MAX_AGE_S: must be at least PRESENCE_THROTTLE_INTERVAL_S")


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def optional_str(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def name(self, name: str, default: str) -> str:
        value = self._env.get(name, default).strip()
        if not value or any(c.isspace() for c in value):
            raise ConfigError(f"{name}: must be a non-empty word without spaces")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._env.get(name, "").strip().lower()
        if raw == "":
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")

    def networks(self, name: str, default: str) -> tuple[Network, ...]:
        raw = self._env.get(name, default)
        try:
            return tuple(
                ipaddress.ip_network(part.strip(), strict=False)
                for part in raw.split(",")
                if part.strip()
            )
        except ValueError:
            raise ConfigError(
                f"{name}: expected comma-separated addresses or networks, got {raw!r}"
            ) from None

    def integer(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name}: must be {bounds}, got {value}")
        return value

    def duration(self, name: str, default: float, *, allow_zero: bool = False) -> float:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return float(default)
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected a number of seconds, got {raw!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{name}: expected a finite number of seconds, got {raw!r}")
        if value < 0 or (value == 0 and not allow_zero):
            kind = "zero or more" if allow_zero else "more than zero"
            raise ConfigError(f"{name}: must be {kind} seconds, got {raw!r}")
        return value


def _default_buckets(redis: RedisConfig | None) -> int:
    """Cluster mode spreads the collections over 16 slots (several per shard of a usual
    3-to-6-shard cluster); one Redis gains nothing from more than one."""
    if redis is not None and redis.mode is RedisMode.CLUSTER:
        return 16
    return 1
