"""Service tokens: credentials of other services (a push-notification service, analytics, a
directory sync), never of a person.

A token is ``psv_`` and 43 URL-safe characters (256 random bits), shown once when it is made;
the database keeps only its SHA-256 (a fast hash is right for a random secret: nothing to
guess). A verified token is trusted for :data:`RECHECK_S`, so a revoked one stops working
within that time on every worker. Calls are limited per token, cluster-wide (a counter per
token and second in Redis).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence.auth.authenticator import AuthError
from presence.clock import Clock
from presence.domain import InvalidInput, NotFound, TooManyAttempts, from_epoch
from presence.keys import Keys
from presence.metrics import Metrics
from presence.store.base import ServiceTokenRecord, ServiceTokenStore

# What a service may be allowed to do (SPEC §12).
SCOPES = ("presence:read", "events:read", "directory:write")
RECHECK_S = 5.0
_PREFIX = "psv_"
_TOKEN_RE = re.compile(r"^psv_[A-Za-z0-9_-]{43}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ServicePrincipal:
    name: str
    scopes: frozenset[str]


def looks_like_service_token(token: str) -> bool:
    return bool(_TOKEN_RE.match(token))


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_scopes(text: str) -> tuple[str, ...]:
    """``presence:read,events:read`` as a tuple; an unknown or missing scope is refused."""
    scopes = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise InvalidInput(
            f"scopes must be some of {', '.join(SCOPES)} (got {text!r})", "invalid_scopes"
        )
    return scopes


class ServiceTokens:
    def __init__(self, store: ServiceTokenStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._verified: dict[str, tuple[ServicePrincipal, float]] = {}  # hash -> until

    async def create(self, name: str, scopes: tuple[str, ...]) -> str:
        """A new token (returned once, never stored); refuses a name that is taken."""
        if not _NAME_RE.match(name):
            raise InvalidInput(
                "a name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter "
                "or digit",
                "invalid_name",
            )
        token = _PREFIX + secrets.token_urlsafe(32)
        record = ServiceTokenRecord(name, _hash(token), scopes, from_epoch(self._clock.now()))
        await self._store.create_service_token(record)
        return token

    async def list(self) -> list[ServiceTokenRecord]:
        return await self._store.list_service_tokens()

    async def revoke(self, name: str) -> None:
        if not await self._store.delete_service_token(name):
            raise NotFound(f"no service token is named {name!r}")

    async def verify(self, token: str) -> ServicePrincipal:
        if not looks_like_service_token(token):
            raise AuthError("invalid_service_token", "invalid service token")
        digest = _hash(token)
        now = self._clock.now()
        cached = self._verified.get(digest)
        if cached is not None and now < cached[1]:
            return cached[0]
        record = await self._store.find_service_token(digest)
        if record is None:
            self._verified.pop(digest, None)
            raise AuthError("invalid_service_token", "invalid service token")
        principal = ServicePrincipal(record.name, frozenset(record.scopes))
        self._verified[digest] = (principal, now + RECHECK_S)
        return principal


class ServiceRateLimiter:
    """At most ``per_second`` calls per token and second, counted in Redis across workers.
    With Redis away the call goes through (counted in ``presence_redis_errors_total``): a
    limiter must not turn a Redis outage into an outage of the service API."""

    def __init__(self, redis: Redis, keys: Keys, metrics: Metrics, per_second: int) -> None:
        self._redis = redis
        self._keys = keys
        self._metrics = metrics
        self._per_second = per_second

    async def admit(self, name: str) -> None:
        second = int(time.time())
        key = self._keys.service_calls(name, second)
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 2)
        try:
            count, _ = await pipe.execute()
        except RedisError:
            self._metrics.redis_errors.labels(operation="service_rate").inc()
            return
        if int(count) > self._per_second:
            raise TooManyAttempts("too many calls for this service token", 1.0)
