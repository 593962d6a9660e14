"""Who is connected where, and which workers are alive, in Redis.

Connections: every live Socket.IO connection is recorded under its subject (sid -> worker) and
under its worker, by Lua scripts, so "was this the subject's last connection anywhere?" has one
answer even when a reconnect lands on another worker at the same moment. The last close starts
a grace period; whichever worker finishes it first (atomically) announces the offline.

Workers: each worker proves it is alive with a key that expires.

A worker refreshes ``worker:<id>`` (its incarnation, PX = worker TTL) and its score in the
``workers`` sorted set every third of the TTL; a worker that stops refreshing drops out of the
live count within one TTL. The incarnation changes at every start, so a restarted worker with a
stable id is told apart from its previous life.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence.clock import Clock
from presence.domain import SubjectRef
from presence.keys import (
    CONNECT,
    DISCONNECT,
    FINISH_OFFLINE,
    TAKE_QUIET_OFFLINE,
    WORKER_BEAT,
    Keys,
    decoded,
)
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
        self._beat = redis.register_script(WORKER_BEAT)
        self.on_forgotten: list[Callable[[], Awaitable[None]]] = []

    async def heartbeat(self) -> bool:
        """Prove this worker alive; False when Redis had forgotten it (a restart, a flush, or
        a stall long enough to be taken for dead), so its connections must be registered again.
        """
        now_ms = int(self._clock.now() * 1000)
        known = await self._beat(
            keys=[self._keys.worker(self.worker_id), self._keys.workers],
            args=[self.incarnation, self._ttl_ms, self.worker_id, now_ms],
        )
        return bool(known)

    async def dead_workers(self) -> list[tuple[str, float]]:
        """Workers whose liveness expired, with the time of their last beat (epoch seconds)."""
        now_ms = int(self._clock.now() * 1000)
        found = await self._redis.zrangebyscore(self._keys.workers, "-inf", now_ms, withscores=True)
        pairs: list[tuple[bytes, float]] = list(found)  # type: ignore[arg-type]
        return [(decoded(w), (score - self._ttl_ms) / 1000) for w, score in pairs]

    async def forget(self, worker_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.zrem(self._keys.workers, worker_id)
        pipe.delete(self._keys.worker_connections(worker_id))
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
        first = True
        while True:
            try:
                known = await self.heartbeat()
                if not known and not first:
                    log.warning("Redis had forgotten this worker; registering it again")
                    for callback in self.on_forgotten:
                        await callback()
                first = False
            except RedisError:
                self._metrics.redis_errors.labels(operation="worker_heartbeat").inc()
                log.warning("worker heartbeat failed")
            await asyncio.sleep(interval)


@dataclass(frozen=True, slots=True)
class ClosedSubject:
    """A subject whose last connection closed at ``closed_ms`` (epoch milliseconds)."""

    subject: SubjectRef
    closed_ms: int

    @property
    def closed_at(self) -> float:
        return self.closed_ms / 1000


class ConnectionRegistry:
    def __init__(
        self, redis: Redis, keys: Keys, worker_id: str, offline_threshold_s: float
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._worker_id = worker_id
        self._threshold_ms = int(offline_threshold_s * 1000)
        self._connect = redis.register_script(CONNECT)
        self._disconnect = redis.register_script(DISCONNECT)
        self._finish = redis.register_script(FINISH_OFFLINE)
        self._take_quiet = redis.register_script(TAKE_QUIET_OFFLINE)

    async def connect(self, subject: SubjectRef, sid: str, now: float) -> bool:
        """Record the connection; True when it made the subject online."""
        member = subject.member
        became = await self._connect(
            keys=[
                self._keys.connections(member),
                self._keys.worker_connections(self._worker_id),
                self._keys.online,
                self._keys.last_activity,
                self._keys.pending_offline,
            ],
            args=[sid, self._worker_id, member, int(now * 1000), self._threshold_ms],
        )
        return bool(became)

    async def disconnect(
        self, subject: SubjectRef, sid: str, now: float, worker_id: str | None = None
    ) -> bool:
        """Forget the connection (of this worker, or of ``worker_id``); True when it was the
        subject's last one anywhere."""
        member = subject.member
        last = await self._disconnect(
            keys=[
                self._keys.connections(member),
                self._keys.worker_connections(worker_id or self._worker_id),
                self._keys.pending_offline,
                self._keys.last_activity,
            ],
            args=[sid, member, int(now * 1000)],
        )
        return bool(last)

    async def sids(self, subject: SubjectRef) -> list[str]:
        """Every live connection id of the subject, on any worker."""
        raw = await self._redis.hkeys(self._keys.connections(subject.member))
        return [decoded(k) for k in raw]

    async def graces_ended(self, closed_before: float, limit: int = 500) -> list[ClosedSubject]:
        """Subjects whose last connection closed before ``closed_before``, oldest first."""
        found = await self._redis.zrangebyscore(
            self._keys.pending_offline,
            "-inf",
            int(closed_before * 1000),
            start=0,
            num=limit,
            withscores=True,
        )
        pairs: list[tuple[bytes, float]] = list(found)  # type: ignore[arg-type]
        return [ClosedSubject(SubjectRef.from_member(decoded(m)), int(s)) for m, s in pairs]

    async def finish_offline(self, closed: ClosedSubject) -> bool:
        """End one grace period; True for exactly one caller when the subject went offline."""
        member = closed.subject.member
        went = await self._finish(
            keys=[
                self._keys.connections(member),
                self._keys.pending_offline,
                self._keys.online,
            ],
            args=[member, closed.closed_ms],
        )
        return bool(went)

    async def of_worker(self, worker_id: str) -> list[tuple[SubjectRef, str]]:
        """Every connection a worker registered: (subject, sid)."""
        raw = await self._redis.smembers(self._keys.worker_connections(worker_id))
        found = []
        for item in raw:
            member, _, sid = decoded(item).rpartition("|")
            found.append((SubjectRef.from_member(member), sid))
        return found

    async def online_batches(self, batch: int = 500) -> AsyncIterator[list[str]]:
        """The members marked online, a batch at a time (SSCAN: never one long command)."""
        cursor = 0
        while True:
            cursor, members = await self._redis.sscan(self._keys.online, cursor, count=batch)
            if members:
                yield [decoded(m) for m in members]
            if cursor == 0:
                return

    async def take_quiet_offline(self, members: list[str], cutoff: float) -> list[ClosedSubject]:
        """Of ``members``, take offline those with no connection, no grace period and no
        activity since ``cutoff``; returns them with their real last activity."""
        flat = await self._take_quiet(
            keys=[self._keys.online, self._keys.last_activity, self._keys.pending_offline],
            args=[int(cutoff * 1000), self._keys.connections(""), *members],
        )
        return [
            ClosedSubject(
                SubjectRef.from_member(decoded(flat[i])), int(float(decoded(flat[i + 1])))
            )
            for i in range(0, len(flat), 2)
        ]
