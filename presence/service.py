"""The presence service: activity, presence reads, manual and forced status. No framework here.

Policy (SPEC §3):

* A subject is online while it has a live connection anywhere, or while its latest REST activity
  is fresher than the offline threshold and came after it last went offline on purpose.
* REST activity of an offline subject makes it online at once; exactly one worker in the
  cluster sees that transition (an atomic Lua decision in Redis) and announces it.
* ``invisible`` looks exactly like offline to everyone else.
* ``lastSeen`` is the moment the subject went offline: its real last activity, never the moment
  a background job noticed.

Where the data lives: Redis holds what changes often and must be shared at once (throttle
windows, the precise last activity, the online marks); MongoDB holds what must survive
(``lastActiveAt`` written at most once per window, the online flag, ``lastSeen``, the manual
status). Reads combine both; when Redis is down they fall back to what MongoDB has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence import policy
from presence.clock import Clock
from presence.config import Settings
from presence.domain import ManualStatus, PresenceRecord, SubjectRef, from_epoch, to_epoch
from presence.keys import COUNT_ONLINE, Keys
from presence.metrics import Metrics
from presence.store.base import Store, StoredPresence
from presence.throttle import ActivityTracker

log = logging.getLogger(__name__)

StatusListener = Callable[[PresenceRecord], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class OnlineCounts:
    users: int
    anonymous: int


class PresenceService:
    def __init__(
        self,
        *,
        redis: Redis,
        store: Store,
        keys: Keys,
        clock: Clock,
        settings: Settings,
        metrics: Metrics,
        tracker: ActivityTracker,
    ) -> None:
        self._redis = redis
        self._store = store
        self._keys = keys
        self._clock = clock
        self._settings = settings
        self._metrics = metrics
        self._tracker = tracker
        self._listeners: list[StatusListener] = []
        self._announcements: set[asyncio.Task[None]] = set()
        self._count_online = redis.register_script(COUNT_ONLINE)

    def add_listener(self, listener: StatusListener) -> None:
        """Called with the new presence record after every transition this worker decides."""
        self._listeners.append(listener)

    async def activity(self, subject: SubjectRef) -> None:
        outcome = await self._tracker.record(subject)
        if outcome.became_online:
            self._announce_later(subject)

    async def records(self, subjects: Sequence[SubjectRef]) -> list[PresenceRecord]:
        """Presence of the subjects that exist, in the order asked."""
        if not subjects:
            return []
        stored = await self._store.get_presence(subjects)
        known = [s for s in subjects if s in stored]
        live = await self._live_states(known, stored)
        now = self._clock.now()
        return [self._combine(stored[s], live[s], now) for s in known]

    async def record(self, subject: SubjectRef) -> PresenceRecord | None:
        found = await self.records([subject])
        return found[0] if found else None

    async def set_manual_status(
        self, subject: SubjectRef, status: ManualStatus
    ) -> PresenceRecord | None:
        before = await self.record(subject)
        if before is None or not await self._store.set_manual_status(subject, status):
            return None
        after = await self.record(subject)
        if after is not None and _visible_change(before, after):
            await self._notify(after)
        return after

    async def force_online(self, subject: SubjectRef, online: bool) -> PresenceRecord | None:
        """Set the online flag by hand (the admin endpoint) and announce the change."""
        before = await self.record(subject)
        if before is None:
            return None
        now = self._clock.now()
        if online:
            pipe = self._redis.pipeline(transaction=True)
            pipe.zadd(self._keys.last_activity, {subject.member: int(now * 1000)}, gt=True)
            pipe.sadd(self._keys.online, subject.member)
            await pipe.execute()
            await self._store.set_online(subject, True)
        else:
            pipe = self._redis.pipeline(transaction=True)
            pipe.srem(self._keys.online, subject.member)
            pipe.zscore(self._keys.last_activity, subject.member)
            _, last_ms = await pipe.execute()
            last = now if last_ms is None else float(last_ms) / 1000
            await self._store.set_online(subject, False, last_seen=from_epoch(last))
        # The next activity must reach Redis to be able to bring the subject back online.
        self._tracker.forget(subject)
        after = await self.record(subject)
        if after is not None and _visible_change(before, after):
            await self._notify(after)
        return after

    async def online_counts(self) -> OnlineCounts:
        cutoff = int((self._clock.now() - self._settings.offline_threshold_s) * 1000)
        users, anons = await self._count_online(
            keys=[self._keys.online, self._keys.last_activity], args=[cutoff]
        )
        return OnlineCounts(int(users), int(anons))

    async def drain(self, timeout_s: float = 5.0) -> None:
        if self._announcements:
            await asyncio.wait(set(self._announcements), timeout=timeout_s)

    async def _live_states(
        self, subjects: Sequence[SubjectRef], stored: dict[SubjectRef, StoredPresence]
    ) -> dict[SubjectRef, policy.LiveState]:
        members = [s.member for s in subjects]
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.smismember(self._keys.online, members)
            pipe.zmscore(self._keys.last_activity, members)
            marks, scores = await pipe.execute()
        except RedisError:
            self._metrics.redis_errors.labels(operation="read_presence").inc()
            return {s: _stored_live_state(stored[s]) for s in subjects}
        return {
            s: policy.LiveState(
                marked_online=bool(mark),
                last_activity=None if score is None else float(score) / 1000,
            )
            for s, mark, score in zip(subjects, marks, scores, strict=True)
        }

    def _combine(
        self, stored: StoredPresence, live: policy.LiveState, now: float
    ) -> PresenceRecord:
        online = policy.is_online(live, now, self._settings.offline_threshold_s)
        status = policy.visible_status(online, stored.manual_status)
        last_activity = live.last_activity
        if last_activity is None and stored.last_active_at is not None:
            last_activity = to_epoch(stored.last_active_at)
        last_active_at = None if last_activity is None else from_epoch(last_activity)
        return PresenceRecord(
            subject=stored.subject,
            username=stored.name,
            is_online=status.value != "offline",
            status=status,
            last_active_at=last_active_at,
            last_seen=policy.last_seen(online, stored.last_seen, last_activity),
        )

    def _announce_later(self, subject: SubjectRef) -> None:
        task = asyncio.ensure_future(self._announce(subject))
        self._announcements.add(task)
        task.add_done_callback(self._announcements.discard)

    async def _announce(self, subject: SubjectRef) -> None:
        try:
            record = await self.record(subject)
        except Exception:
            log.exception("could not read presence for announcement")
            return
        if record is not None and record.is_online:
            await self._notify(record)

    async def _notify(self, record: PresenceRecord) -> None:
        self._metrics.status_changes.labels(to=record.status.value).inc()
        for listener in self._listeners:
            try:
                await listener(record)
            except Exception:  # one broken listener must not silence the others
                log.exception("status listener failed")


def _stored_live_state(stored: StoredPresence) -> policy.LiveState:
    last = None if stored.last_active_at is None else to_epoch(stored.last_active_at)
    return policy.LiveState(marked_online=stored.is_online, last_activity=last)


def _visible_change(before: PresenceRecord, after: PresenceRecord) -> bool:
    return before.is_online != after.is_online or before.status != after.status
