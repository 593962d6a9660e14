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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence import policy
from presence.clock import Clock
from presence.domain import SubjectKind, SubjectRef, milliseconds
from presence.keys import Keys, decoded, leader_of, split_worker_entry
from presence.lua import (
    CONNECT,
    COUNT_ONLINE,
    DISCONNECT,
    FINISH_OFFLINE,
    TAKE_QUIET_OFFLINE,
    WORKER_BEAT,
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
        self._ttl_ms = milliseconds(ttl_s)
        self._beat = redis.register_script(WORKER_BEAT)
        self.on_forgotten: list[Callable[[], Awaitable[None]]] = []

    async def heartbeat(self) -> bool:
        """Prove this worker alive; False when Redis had forgotten it (a restart, a flush, or
        a stall long enough to be taken for dead), so its connections must be registered again.
        """
        now_ms = milliseconds(self._clock.now())
        known = await self._beat(
            keys=[self._keys.worker(self.worker_id), self._keys.workers],
            args=[self.incarnation, self._ttl_ms, self.worker_id, now_ms],
        )
        return bool(known)

    async def dead_workers(self) -> list[tuple[str, float]]:
        """Workers whose liveness expired, with the time of their last beat (epoch seconds)."""
        now_ms = milliseconds(self._clock.now())
        found = await self._redis.zrangebyscore(self._keys.workers, "-inf", now_ms, withscores=True)
        pairs: list[tuple[bytes, float]] = list(found)  # type: ignore[arg-type]
        return [(decoded(w), (score - self._ttl_ms) / 1000) for w, score in pairs]

    async def forget(self, worker_id: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.zrem(self._keys.workers, worker_id)
        pipe.delete(self._keys.worker_connections(worker_id))
        await pipe.execute()

    async def live_workers(self) -> int:
        now_ms = milliseconds(self._clock.now())
        return int(await self._redis.zcount(self._keys.workers, now_ms, "+inf"))

    async def leader(self) -> str | None:
        """The worker holding the maintenance lease (presence.maintenance.lease writes it),
        read from the lease key itself: None while nobody holds it."""
        return leader_of(await self._redis.get(self._keys.leader))

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
    """The live half of presence in Redis: connections, grace periods and the online marks,
    read and changed only through the scripts of :mod:`presence.lua`."""

    def __init__(
        self, redis: Redis, keys: Keys, worker_id: str, offline_threshold_s: float
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._worker_id = worker_id
        self._threshold_ms = milliseconds(offline_threshold_s)
        self._connect = redis.register_script(CONNECT)
        self._disconnect = redis.register_script(DISCONNECT)
        self._finish = redis.register_script(FINISH_OFFLINE)
        self._take_quiet = redis.register_script(TAKE_QUIET_OFFLINE)
        self._count_online = redis.register_script(COUNT_ONLINE)

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
            args=[sid, self._worker_id, member, milliseconds(now), self._threshold_ms],
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
            args=[sid, member, milliseconds(now)],
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
            milliseconds(closed_before),
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
            member, sid = split_worker_entry(decoded(item))
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
            args=[milliseconds(cutoff), self._keys.connections(""), *members],
        )
        return [
            ClosedSubject(
                SubjectRef.from_member(decoded(flat[i])), int(float(decoded(flat[i + 1])))
            )
            for i in range(0, len(flat), 2)
        ]

    async def live_states(self, subjects: Sequence[SubjectRef]) -> list[policy.LiveState]:
        """What Redis knows of each subject, in the order given, in one round trip."""
        members = [s.member for s in subjects]
        pipe = self._redis.pipeline(transaction=False)
        pipe.smismember(self._keys.online, members)
        pipe.zmscore(self._keys.last_activity, members)
        pipe.zmscore(self._keys.pending_offline, members)
        for member in members:
            pipe.hlen(self._keys.connections(member))
        marks, scores, pending, *counts = await pipe.execute()
        return [
            policy.LiveState(
                marked_online=bool(mark),
                last_activity=None if score is None else float(score) / 1000,
                connections=int(count),
                in_grace=closed is not None,
            )
            for mark, score, closed, count in zip(marks, scores, pending, counts, strict=True)
        ]

    async def count_online(self, now: float) -> dict[SubjectKind, int]:
        """Subjects online by the rule, per kind, counted inside Redis."""
        users, anons = await self._count_online(
            keys=[self._keys.online, self._keys.last_activity, self._keys.pending_offline],
            args=[milliseconds(now), self._threshold_ms, self._keys.connections("")],
        )
        return {SubjectKind.USER: int(users), SubjectKind.ANONYMOUS: int(anons)}

    async def mark_online(self, subject: SubjectRef, now: float) -> None:
        """Online by hand (an admin): marked, and active now."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.zadd(self._keys.last_activity, {subject.member: milliseconds(now)}, gt=True)
        pipe.sadd(self._keys.online, subject.member)
        await pipe.execute()

    async def mark_offline(self, subject: SubjectRef) -> float | None:
        """Offline by hand (an admin): unmarked, out of any grace period. Returns its last
        activity (epoch seconds), which becomes its ``lastSeen``."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.srem(self._keys.online, subject.member)
        pipe.zrem(self._keys.pending_offline, subject.member)
        pipe.zscore(self._keys.last_activity, subject.member)
        _, _, last_ms = await pipe.execute()
        return None if last_ms is None else float(last_ms) / 1000
