"""Worker liveness in Redis: each worker proves it is alive with a key that expires.

A worker refreshes ``worker:<id>`` (its incarnation, PX = worker TTL) and its score in the
``workers`` sorted set every third of the TTL; a worker that stops refreshing drops out of the
live count within one TTL. The incarnation changes at every start, so a restarted worker with a
stable id is told apart from its previous life.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence.clock import Clock
from presence.keys import Keys
from presence.metrics import Metrics

log = logging.getLogger(__name__)


class WorkerRegistry:
    def __init__(
        self, redis: Redis, keys: Keys, clock: Clock, metrics: Metrics, worker_id: str, ttl_s: float
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._metrics = metrics
        self.worker_id = worker_id
        self.incarnation = uuid.uuid4().hex
        self._ttl_ms = int(ttl_s * 1000)

    async def heartbeat(self) -> None:
        now_ms = int(self._clock.now() * 1000)
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._keys.worker(self.worker_id), self.incarnation, px=self._ttl_ms)
        pipe.zadd(self._keys.workers, {self.worker_id: now_ms + self._ttl_ms})
        pipe.zremrangebyscore(self._keys.workers, "-inf", now_ms)
        await pipe.execute()

    async def live_workers(self) -> int:
        now_ms = int(self._clock.now() * 1000)
        return int(await self._redis.zcount(self._keys.workers, now_ms, "+inf"))

    async def leave(self) -> None:
        """Graceful exit: stop counting as alive at once."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(self._keys.worker(self.worker_id))
        pipe.zrem(self._keys.workers, self.worker_id)
        await pipe.execute()

    async def run(self) -> None:
        interval = self._ttl_ms / 3000
        while True:
            try:
                await self.heartbeat()
            except RedisError:
                self._metrics.redis_errors.labels(operation="worker_heartbeat").inc()
                log.warning("worker heartbeat failed")
            await asyncio.sleep(interval)
