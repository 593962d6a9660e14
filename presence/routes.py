"""Which workers have a local socket in a room: the directory the routed message queue sends by.

Each worker writes its own entries (a room enters its set when it gains its first local socket
and leaves it when it loses the last); a publisher reads the sets of the rooms it addresses and
sends one message per worker found. The route sets live in the buckets of :mod:`presence.keys`,
so reading the routes of a whole audience is one ``SUNION`` per bucket, and a dead worker's
entries are removed with the rest of its traces
(:meth:`presence.registry.WorkerRegistry.forget`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from redis.asyncio import Redis

from presence.clock import Clock
from presence.domain import milliseconds
from presence.keys import Bucket, Keys, decoded
from presence.lua import FORGET_ROUTES

# Route changes per pipeline: a worker re-registering ten thousand rooms after a Redis restart
# sends them in slices, never one unbounded request.
APPLY_SLICE = 1000


class RoomRoutes:
    def __init__(self, redis: Redis, keys: Keys, clock: Clock, worker_id: str) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self.worker_id = worker_id
        self._forget = redis.register_script(FORGET_ROUTES)

    def channel(self, worker_id: str) -> str:
        return self._keys.worker_channel(worker_id)

    async def apply(self, changes: Mapping[str, bool]) -> None:
        """Enter (True) or leave (False) the route set of each room. Idempotent, so a slice
        that failed half-way is simply sent again."""
        items = list(changes.items())
        for start in range(0, len(items), APPLY_SLICE):
            pipe = self._redis.pipeline(transaction=False)
            for room, wanted in items[start : start + APPLY_SLICE]:
                bucket = self._keys.bucket(room)
                mine = bucket.worker_routes(self.worker_id)
                if wanted:
                    pipe.sadd(bucket.route(room), self.worker_id)
                    pipe.sadd(mine, room)
                else:
                    pipe.srem(bucket.route(room), self.worker_id)
                    pipe.srem(mine, room)
            await pipe.execute()

    async def workers_for(self, rooms: Iterable[str]) -> set[str]:
        """Every worker routed for at least one of the rooms: one ``SUNION`` per bucket the
        rooms fall in, sent together (not in a pipeline: a cluster pipeline refuses
        multi-key commands, even within one slot)."""
        by_bucket: dict[Bucket, list[str]] = {}
        for room in rooms:
            bucket = self._keys.bucket(room)
            by_bucket.setdefault(bucket, []).append(bucket.route(room))
        answers = await asyncio.gather(*(self._redis.sunion(keys) for keys in by_bucket.values()))
        return {decoded(m) for members in answers for m in members}

    async def live_workers(self) -> set[str]:
        """Workers whose liveness has not expired: the audience of a namespace-wide message."""
        now_ms = milliseconds(self._clock.now())
        members: list[bytes] = await self._redis.zrangebyscore(  # type: ignore[assignment]
            self._keys.workers, now_ms, "+inf"
        )
        return {decoded(m) for m in members}

    async def forget(self, worker_id: str) -> int:
        """Take a worker out of every route set (a dead one, or this one leaving or starting
        again): one script per bucket. Returns how many rooms it was routed for."""
        total = 0
        for bucket in self._keys.every_bucket():
            total += int(
                await self._forget(
                    keys=[bucket.worker_routes(worker_id)],
                    args=[bucket.route_prefix, worker_id],
                )
            )
        return total
