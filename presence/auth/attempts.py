"""Failed sign-in attempts, limited per address and per account, cluster-wide.

Counters live in Redis (``INCR`` + ``PEXPIRE NX``, a fixed one-minute window), so a guesser
gains nothing by spreading attempts over workers. Only failures count: a busy office behind one
address, or a user opening many tabs, never locks itself out by succeeding. Once a counter is
at its limit the attempt is refused *before* the credentials are checked, which also keeps an
attacker from spending our argon2 time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis

from presence.domain import TooManyAttempts
from presence.keys import Keys
from presence.lua import COUNT_FAILURE

WINDOW_MS = 60_000


@dataclass(frozen=True, slots=True)
class Attempt:
    """Who is trying: the client's address and, when the attempt names one, the account. A
    check looks at whichever of the two is given."""

    address: str | None = None
    account: str | None = None


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class AttemptLimiter:
    def __init__(self, redis: Redis, keys: Keys, *, per_address: int, per_account: int) -> None:
        self._redis = redis
        self._keys = keys
        self._per_address = per_address
        self._per_account = per_account
        self._count_failure = redis.register_script(COUNT_FAILURE)

    def _counters(self, attempt: Attempt) -> list[tuple[str, int]]:
        """(key, limit) of each counter the attempt names."""
        counters = []
        if attempt.address is not None:
            key = self._keys.auth_failures("address", _digest(attempt.address))
            counters.append((key, self._per_address))
        if attempt.account is not None:
            key = self._keys.auth_failures("account", _digest(attempt.account))
            counters.append((key, self._per_account))
        return counters

    async def check(self, attempt: Attempt) -> None:
        """Raise :class:`TooManyAttempts` when the address or the account (each when given)
        used up its failures for the window."""
        counters = self._counters(attempt)
        pipe = self._redis.pipeline(transaction=False)
        for key, _ in counters:
            pipe.get(key)
            pipe.pttl(key)
        replies = await pipe.execute()
        for index, (_, limit) in enumerate(counters):
            count, ttl_ms = replies[2 * index], replies[2 * index + 1]
            if count is not None and int(count) >= limit:
                retry_after_s = max(ttl_ms, 0) / 1000 if ttl_ms and ttl_ms > 0 else 1.0
                raise TooManyAttempts("too many failed attempts, try again later", retry_after_s)

    async def failed(self, attempt: Attempt) -> None:
        # One script per counter: the address and the account live in different slots of a
        # Redis Cluster, and each counter must get its expiry in the same step as its count.
        for key, _ in self._counters(attempt):
            await self._count_failure(keys=[key], args=[WINDOW_MS])
