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
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence import policy
from presence.clock import Clock
from presence.domain import SubjectKind, SubjectRef, milliseconds, to_epoch
from presence.keys import Bucket, Keys, decoded, leader_of, split_worker_entry
from presence.lua import (
    CONNECT,
    COUNT_ONLINE,
    DISCONNECT,
    FINISH_OFFLINE,
    LIVE_STATES,
    MARK_OFFLINE,
    MARK_ONLINE,
    SETTLE_WRITTEN,
    TAKE_QUIET_OFFLINE,
    WORKER_BEAT,
    WORKER_LEAVE,
)
from presence.metrics import Metrics
from presence.routes import RoomRoutes
from presence.store.base import OnlineChange

log = logging.getLogger(__name__)


class WorkerRegistry:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        clock: Clock,
        metrics: Metrics,
        worker_id: str,
        ttl_s: float,
        routes: RoomRoutes,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._metrics = metrics
        self.worker_id = worker_id
        self.incarnation = uuid.uuid4().hex
        self._ttl_ms = milliseconds(ttl_s)
        self._beat = redis.register_script(WORKER_BEAT)
        self._leave = redis.register_script(WORKER_LEAVE)
        self._routes = routes  # a dead worker's message routes go with its connections
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
        """After its connections are closed: the dead worker leaves every trace (its
        connection sets and its message routes live in every bucket, so this is a command
        and a script per bucket)."""
        await self._routes.forget(worker_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrem(self._keys.workers, worker_id)
        for bucket in self._keys.every_bucket():
            pipe.delete(bucket.worker_connections(worker_id))
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
        await self._leave(
            keys=[self._keys.worker(self.worker_id), self._keys.workers], args=[self.worker_id]
        )

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
        self._settle = redis.register_script(SETTLE_WRITTEN)
        self._live = redis.register_script(LIVE_STATES)
        # Each member's last answer from Redis, as read, with the state it means: a member's
        # fields change far less often than a room is read, and a state built once is also
        # compared by identity in the worker's record memo. One entry per member, replaced
        # when its answer changes (never one per answer: connections would grow it).
        self._parsed: dict[str, tuple[tuple[Any, ...], policy.LiveState]] = {}
        self._count_online = redis.register_script(COUNT_ONLINE)
        self._mark_online = redis.register_script(MARK_ONLINE)
        self._mark_offline = redis.register_script(MARK_OFFLINE)

    async def connect(self, subject: SubjectRef, sid: str, now: float) -> bool:
        """Record the connection; True when it made the subject online."""
        member = subject.member
        bucket = self._keys.bucket(member)
        became = await self._connect(
            keys=[
                bucket.connections(member),
                bucket.worker_connections(self._worker_id),
                bucket.online,
                bucket.last_activity,
                bucket.pending_offline,
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
        bucket = self._keys.bucket(member)
        last = await self._disconnect(
            keys=[
                bucket.connections(member),
                bucket.worker_connections(worker_id or self._worker_id),
                bucket.pending_offline,
                bucket.last_activity,
            ],
            args=[sid, member, milliseconds(now)],
        )
        return bool(last)

    async def sids(self, subject: SubjectRef) -> list[str]:
        """Every live connection id of the subject, on any worker."""
        raw = await self._redis.hkeys(self._keys.connections(subject))
        return [decoded(k) for k in raw]

    async def graces_ended(self, closed_before: float, limit: int = 500) -> list[ClosedSubject]:
        """Subjects whose last connection closed before ``closed_before``, oldest first."""
        return await self._oldest(lambda bucket: bucket.pending_offline, closed_before, limit)

    async def _oldest(
        self, key: Callable[[Bucket], str], before: float, limit: int
    ) -> list[ClosedSubject]:
        """The entries of one sorted set of every bucket scored before ``before``, oldest
        first, as subjects with their moment."""
        pipe = self._redis.pipeline(transaction=False)
        for bucket in self._keys.every_bucket():
            pipe.zrangebyscore(
                key(bucket), "-inf", milliseconds(before), start=0, num=limit, withscores=True
            )
        found = [
            ClosedSubject(SubjectRef.from_member(decoded(m)), int(score))
            for pairs in await pipe.execute()
            for m, score in pairs
        ]
        return sorted(found, key=lambda c: c.closed_ms)[:limit]

    async def finish_offline(self, closed: ClosedSubject) -> bool:
        """End one grace period; True for exactly one caller when the subject went offline."""
        member = closed.subject.member
        bucket = self._keys.bucket(member)
        went = await self._finish(
            keys=[
                bucket.connections(member),
                bucket.pending_offline,
                bucket.online,
                bucket.last_seen,
                bucket.unwritten,
                bucket.away,
            ],
            args=[member, closed.closed_ms],
        )
        return bool(went)

    async def settle_written(self, written: Sequence[OnlineChange]) -> None:
        """The database has these changes: their offlines (``lastSeen`` up to the one written)
        leave the journal that lets the maintenance leader write a dead worker's offlines."""
        grouped: dict[Bucket, list[str | int]] = {}
        for change in written:
            if change.last_seen is None:
                continue
            member = change.subject.member
            at = milliseconds(to_epoch(change.last_seen))
            grouped.setdefault(self._keys.bucket(member), []).extend([member, at])
        for bucket, args in grouped.items():
            await self._settle(keys=[bucket.unwritten], args=args)

    async def unwritten_offlines(
        self, decided_before: float, limit: int = 500
    ) -> list[ClosedSubject]:
        """Offlines decided before ``decided_before`` that no worker wrote to the database
        (the worker that decided them died first), oldest first."""
        return await self._oldest(lambda bucket: bucket.unwritten, decided_before, limit)

    async def of_worker(self, worker_id: str) -> list[tuple[SubjectRef, str]]:
        """Every connection a worker registered, in every bucket: (subject, sid)."""
        pipe = self._redis.pipeline(transaction=False)
        for bucket in self._keys.every_bucket():
            pipe.smembers(bucket.worker_connections(worker_id))
        found = []
        for entries in await pipe.execute():
            for item in entries:
                member, sid = split_worker_entry(decoded(item))
                found.append((SubjectRef.from_member(member), sid))
        return found

    async def online_batches(self, batch: int = 500) -> AsyncIterator[list[str]]:
        """The members marked online, a batch at a time and bucket by bucket (SSCAN: never
        one long command); every batch lies in one bucket."""
        for bucket in self._keys.every_bucket():
            cursor = 0
            while True:
                cursor, members = await self._redis.sscan(bucket.online, cursor, count=batch)
                if members:
                    yield [decoded(m) for m in members]
                if cursor == 0:
                    break

    async def take_quiet_offline(self, members: list[str], cutoff: float) -> list[ClosedSubject]:
        """Of ``members``, take offline those with no connection, no grace period and no
        activity since ``cutoff``; returns them with their real last activity."""
        taken: list[ClosedSubject] = []
        for bucket, in_bucket in self._by_bucket(members).items():
            flat = await self._take_quiet(
                keys=[
                    bucket.online,
                    bucket.last_activity,
                    bucket.pending_offline,
                    bucket.last_seen,
                ],
                args=[milliseconds(cutoff), bucket.connections_prefix, *in_bucket],
            )
            taken += [
                ClosedSubject(
                    SubjectRef.from_member(decoded(flat[i])), int(float(decoded(flat[i + 1])))
                )
                for i in range(0, len(flat), 2)
            ]
        return taken

    def _by_bucket(self, members: Sequence[str]) -> dict[Bucket, list[str]]:
        return {
            bucket: [members[i] for i in positions]
            for bucket, positions in self._positions_by_bucket(members).items()
        }

    def _positions_by_bucket(self, members: Sequence[str]) -> dict[Bucket, list[int]]:
        """The positions of each bucket's members (one bucket, all of them, when standalone)."""
        if self._keys.buckets == 1:
            return {self._keys.bucket(""): list(range(len(members)))} if members else {}
        at: dict[Bucket, list[int]] = {}
        for position, member in enumerate(members):
            at.setdefault(self._keys.bucket(member), []).append(position)
        return at

    async def live_states(self, subjects: Sequence[SubjectRef]) -> list[policy.LiveState]:
        """What Redis knows of each subject, in the order given: one script per bucket, all
        at once (one round trip in standalone mode, where there is one bucket)."""
        members = [s.member for s in subjects]
        at = self._positions_by_bucket(members)
        # Side by side, one call per bucket (a cluster pipeline cannot carry scripts).
        replies = await asyncio.gather(
            *(
                self._live(
                    keys=[
                        bucket.online,
                        bucket.last_activity,
                        bucket.pending_offline,
                        bucket.last_seen,
                        bucket.generations,
                        bucket.away,
                    ],
                    args=[bucket.connections_prefix, _lines([members[i] for i in positions])],
                )
                for bucket, positions in at.items()
            )
        )
        states: list[policy.LiveState] = [_NOTHING_KNOWN] * len(members)
        parsed = self._parsed
        for positions, flat in zip(at.values(), replies, strict=True):
            fields = iter(flat)
            # Seven fields per member, in the script's order.
            for position, raw in zip(positions, zip(*[fields] * 7, strict=True), strict=True):
                member = members[position]
                kept = parsed.get(member)
                if kept is not None and kept[0] == raw:
                    states[position] = kept[1]
                    continue
                state = _parse_live(raw)
                if kept is None and len(parsed) >= _PARSED_KEPT:
                    parsed.clear()
                parsed[member] = (raw, state)
                states[position] = state
        return states

    async def count_online(self, now: float) -> dict[SubjectKind, int]:
        """Subjects online by the rule, per kind, counted inside Redis, bucket by bucket."""
        counts = dict.fromkeys(SubjectKind, 0)
        for bucket in self._keys.every_bucket():
            users, anons = await self._count_online(
                keys=[bucket.online, bucket.last_activity, bucket.pending_offline],
                args=[milliseconds(now), self._threshold_ms, bucket.connections_prefix],
            )
            counts[SubjectKind.USER] += int(users)
            counts[SubjectKind.ANONYMOUS] += int(anons)
        return counts

    async def mark_online(self, subject: SubjectRef, now: float) -> None:
        """Online by hand (an admin): marked, and active now."""
        bucket = self._keys.bucket(subject.member)
        await self._mark_online(
            keys=[bucket.last_activity, bucket.online], args=[subject.member, milliseconds(now)]
        )

    async def mark_offline(self, subject: SubjectRef) -> float | None:
        """Offline by hand (an admin): unmarked, out of any grace period. Returns its last
        activity (epoch seconds), which becomes its ``lastSeen``."""
        bucket = self._keys.bucket(subject.member)
        last_ms = await self._mark_offline(
            keys=[bucket.online, bucket.pending_offline, bucket.away, bucket.last_activity],
            args=[subject.member],
        )
        return None if last_ms is None else float(last_ms) / 1000

    async def raise_last_seen(self, subject: SubjectRef, at: float) -> None:
        """``lastSeen`` as Redis knows it, raised to ``at`` (an admin's offline)."""
        bucket = self._keys.bucket(subject.member)
        await self._redis.zadd(bucket.last_seen, {subject.member: milliseconds(at)}, gt=True)


_NOTHING_KNOWN = policy.LiveState(marked_online=False, last_activity=None)
# Members whose parsed answer is kept before starting afresh (a few hundred bytes each).
_PARSED_KEPT = 20_000


def _parse_live(raw: tuple[Any, ...]) -> policy.LiveState:
    mark, last, closed, seen, generation, connections, away = raw
    return policy.LiveState(
        bool(mark),
        None if last is None else float(last) / 1000,
        int(connections or 0),
        closed is not None,
        None if seen is None else float(seen) / 1000,
        0 if generation is None else int(generation),
        bool(away),
    )


def _lines(members: list[str]) -> str:
    """Members one per line; no member holds a line break (ids refuse control characters),
    and one that did would shift every state after it, so it is refused here as well."""
    joined = "\n".join(members)
    if joined.count("\n") != len(members) - 1 or "" in members:
        raise ValueError("a member name is empty or holds a line break")
    return joined
