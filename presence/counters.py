"""Cluster-wide status counters (SPEC §5), summed over every worker in one Redis hash.

Each worker counts in memory and adds its deltas to Redis every :data:`FLUSH_INTERVAL_S`, so the
request path never pays a round trip for a counter and the cluster-wide sum trails the last
request by at most that interval.

Every delta carries the millisecond of the activity it counts (a write's outcome carries the
time of the request that caused it), and Redis keeps only deltas at or after the last reset. So a
reset issued on any worker zeroes the counters cluster-wide without losing what follows it or
keeping what came before it, and ``total == throttled + successful + failed`` holds across a
reset. Workers' clocks are compared here, so they should agree (NTP) to the millisecond range.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence.domain import milliseconds
from presence.keys import Keys, decoded
from presence.lua import ADD_COUNTERS, RESET_COUNTERS
from presence.metrics import Metrics

log = logging.getLogger(__name__)

TOTAL = "totalRequests"
THROTTLED = "throttledRequests"
SUCCESSFUL = "successfulUpdates"
FAILED = "failedUpdates"
FIELDS = (TOTAL, THROTTLED, SUCCESSFUL, FAILED)
_SLOT = {name: index for index, name in enumerate(FIELDS)}
# "Correct within 1 s of the last request" (SPEC §5), with room for one slow round trip.
FLUSH_INTERVAL_S = 0.25


@dataclass(frozen=True, slots=True)
class StatusMetrics:
    total_requests: int
    throttled_requests: int
    successful_updates: int
    failed_updates: int
    cache_size: int

    @property
    def throttle_rate(self) -> float:
        if self.total_requests == 0:
            return 0.0
        return round(self.throttled_requests / self.total_requests * 100, 2)

    def to_json(self) -> dict[str, object]:
        return {
            TOTAL: self.total_requests,
            THROTTLED: self.throttled_requests,
            SUCCESSFUL: self.successful_updates,
            FAILED: self.failed_updates,
            "cacheSize": self.cache_size,
            "throttleRate": self.throttle_rate,
        }


class ClusterCounters:
    def __init__(self, redis: Redis, keys: Keys, metrics: Metrics) -> None:
        self._redis = redis
        self._keys = keys
        self._metrics = metrics
        # Per millisecond of activity, one delta per field (in FIELDS order).
        self._deltas: dict[int, list[int]] = {}
        self._add = redis.register_script(ADD_COUNTERS)
        self._reset = redis.register_script(RESET_COUNTERS)

    def _row(self, at: float) -> list[int]:
        at_ms = milliseconds(at)
        row = self._deltas.get(at_ms)
        if row is None:
            row = self._deltas[at_ms] = [0, 0, 0, 0]
        return row

    def add(self, field: str, at: float) -> None:
        """Count one event of the activity that happened at ``at`` (epoch seconds)."""
        self._row(at)[_SLOT[field]] += 1

    def add_throttled(self, at: float) -> None:
        """One request answered inside its window: the hot path, so one lookup for both."""
        row = self._row(at)
        row[0] += 1
        row[1] += 1

    async def flush(self) -> None:
        """Push this worker's deltas; on a Redis error they stay here for the next flush."""
        if not self._deltas:
            return
        pending, self._deltas = self._deltas, {}
        rows = "".join(f"{at_ms} {r[0]} {r[1]} {r[2]} {r[3]}\n" for at_ms, r in pending.items())
        try:
            await self._add(keys=[self._keys.counters], args=[rows, *FIELDS])
        except RedisError:
            self._metrics.redis_errors.labels(operation="counters").inc()
            for at_ms, row in pending.items():
                kept = self._row(at_ms / 1000)
                for index, amount in enumerate(row):
                    kept[index] += amount

    async def flush_and_read(self, now_ms: int) -> StatusMetrics:
        """This worker's deltas pushed first, then the cluster-wide sums; windows that ended
        before ``now_ms`` are dropped on the way, so ``cacheSize`` counts open ones only."""
        await self.flush()
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(self._keys.counters)
        for bucket in self._keys.every_bucket():
            pipe.zremrangebyscore(bucket.windows, "-inf", now_ms)
            pipe.zcard(bucket.windows)
        raw, *pruned_and_counted = await pipe.execute()
        windows = sum(pruned_and_counted[1::2])
        values = {decoded(k): int(v) for k, v in raw.items()}
        return StatusMetrics(
            total_requests=values.get(TOTAL, 0),
            throttled_requests=values.get(THROTTLED, 0),
            successful_updates=values.get(SUCCESSFUL, 0),
            failed_updates=values.get(FAILED, 0),
            cache_size=int(windows),
        )

    async def reset(self, now_ms: int) -> None:
        await self._reset(keys=[self._keys.counters], args=[now_ms, *FIELDS])
