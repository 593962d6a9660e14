"""Readiness: does each dependency answer right now? Answers within a bound even when a
dependency hangs, because a load balancer polls it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence.store.base import Lifecycle, StoreError

# Readiness must answer quickly even when a dependency hangs.
CHECK_TIMEOUT_S = 2.0


class Readiness:
    def __init__(self, redis: Redis, store: Lifecycle) -> None:
        self._redis = redis
        self._store = store
        # Checks other layers add (e.g. "pubsub": does the listener hear its probe?).
        self.extra: dict[str, Callable[[], bool]] = {}

    async def _redis_ok(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._redis.ping(), CHECK_TIMEOUT_S))
        except (RedisError, OSError, TimeoutError):
            return False

    async def _store_ok(self) -> bool:
        try:
            await asyncio.wait_for(self._store.ping(), CHECK_TIMEOUT_S)
        except (StoreError, OSError, TimeoutError):
            return False
        return True

    async def checks(self) -> dict[str, bool]:
        """Each dependency by name, True when it is healthy."""
        redis_up, store_up = await asyncio.gather(self._redis_ok(), self._store_ok())
        found = {"redis": redis_up, "mongodb": store_up}
        found.update({name: healthy() for name, healthy in self.extra.items()})
        return found
