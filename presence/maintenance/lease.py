"""The maintenance lease: a Redis key with a TTL, held by one worker, plus a durable epoch.

* Acquire is ``SET NX PX`` (never blocking); every worker keeps trying, forever, so a lost lease
  is always won back by someone (a worker that lost it stays in the election).
* The holder renews it every third of the TTL from its own task (checked at start-up: a TTL
  shorter than three renewals could expire between them).
* :meth:`LeaderLease.valid` is checked before every maintenance write: a holder that has not
  renewed for two thirds of the TTL (a stalled event loop, a SIGSTOP) no longer trusts it.
* Every grant takes a new epoch from MongoDB (``$inc``): it survives a Redis restart, and the
  database refuses writes stamped with an older epoch than the newest one it has seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence.clock import Clock
from presence.domain import milliseconds
from presence.keys import Keys, lease_holder
from presence.lua import RELEASE_IF_HELD, RENEW_LEASE
from presence.metrics import Metrics
from presence.store.base import StoreError

log = logging.getLogger(__name__)


class LeaderLease:
    def __init__(
        self,
        *,
        redis: Redis,
        keys: Keys,
        clock: Clock,
        metrics: Metrics,
        worker_id: str,
        incarnation: str,
        ttl_s: float,
        next_epoch: Callable[[], Awaitable[int]],
        renew_every_s: float | None = None,
    ) -> None:
        renew = ttl_s / 3 if renew_every_s is None else renew_every_s
        if ttl_s < 3 * renew:
            raise ValueError(f"leader TTL {ttl_s} s must be at least 3 renewals ({renew} s each)")
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._metrics = metrics
        self.worker_id = worker_id
        self._token = lease_holder(worker_id, incarnation)
        self._ttl_ms = milliseconds(ttl_s)
        self._ttl_s = ttl_s
        self._renew_s = renew
        self._next_epoch = next_epoch
        self._renew = redis.register_script(RENEW_LEASE)
        self._release = redis.register_script(RELEASE_IF_HELD)
        self._held = False
        self._released = False  # at shutdown: never taken again by this process
        self._renewed_at = 0.0  # monotonic
        self.epoch = 0

    def valid(self) -> bool:
        """Held, and renewed recently enough to be sure nobody else holds it."""
        return self._held and self._clock.monotonic() - self._renewed_at < self._ttl_s * 2 / 3

    @property
    def held(self) -> bool:
        return self._held

    async def try_acquire(self) -> bool:
        if self._released:
            return False
        started = self._clock.monotonic()
        if not await self._redis.set(self._keys.leader, self._token, nx=True, px=self._ttl_ms):
            return False
        try:
            epoch = await self._next_epoch()
        except StoreError:
            # Without a new epoch our writes would be refused anyway: give the lease back.
            await self._give_back()
            return False
        self.epoch = epoch
        self._renewed_at = started
        self._held = True
        self._metrics.leader.set(1)
        self._metrics.leader_epoch.set(epoch)
        log.info("maintenance leader", extra={"epoch": epoch})
        return True

    async def renew(self) -> bool:
        started = self._clock.monotonic()
        try:
            renewed = await self._renew(keys=[self._keys.leader], args=[self._token, self._ttl_ms])
        except RedisError:
            self._metrics.redis_errors.labels(operation="lease").inc()
            if not self.valid():
                self._lose("renewal failed for too long")
            return self._held
        if renewed:
            self._renewed_at = started
        else:
            self._lose("lease taken over or expired")
        return self._held

    def _lose(self, why: str) -> None:
        if self._held:
            log.warning("maintenance lease lost: %s", why, extra={"epoch": self.epoch})
        self._held = False
        self._metrics.leader.set(0)

    async def _give_back(self) -> None:
        with contextlib.suppress(RedisError):
            await self._release(keys=[self._keys.leader], args=[self._token])

    async def release(self) -> None:
        """Graceful shutdown: let another worker lead at once instead of after the TTL."""
        self._released = True
        if self._held:
            self._lose("released at shutdown")
            await self._give_back()

    async def run(self) -> None:
        """The permanent election: acquire when free, renew while held."""
        while True:
            try:
                if self._held:
                    await self.renew()
                else:
                    await self.try_acquire()
            except RedisError:
                self._metrics.redis_errors.labels(operation="lease").inc()
            except Exception:  # the election must outlive any single failure
                log.exception("lease loop failed")
            await asyncio.sleep(self._renew_s)
