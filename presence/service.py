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
windows, the precise last activity, the online marks, ``lastSeen``); MongoDB holds what must
survive (``lastActiveAt`` written at most once per window, the online flag and ``lastSeen``
written behind the announcement, the manual status). Reads combine Redis with the worker's
cache of the stored fields (:mod:`presence.profiles`), so a transition is announced without
waiting on the database; when Redis is down they fall back to what MongoDB has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis.exceptions import RedisError

from presence import policy
from presence.clock import Clock
from presence.config import Settings
from presence.domain import (
    LastSeenPrivacy,
    PresenceRecord,
    Status,
    StatusChange,
    SubjectKind,
    SubjectRef,
    from_epoch,
    milliseconds,
)
from presence.graces import GracePeriods
from presence.metrics import Metrics
from presence.profiles import Profiles
from presence.record_memo import RecordMemo
from presence.records import combine, privacy_of, stored_live_state
from presence.registry import ClosedSubject, ConnectionRegistry
from presence.store.base import (
    ManualChoice,
    PresenceStore,
    StoredPresence,
    StoreError,
)
from presence.throttle import ActivityTracker
from presence.write_behind import OnlineWrites

log = logging.getLogger(__name__)

StatusListener = Callable[[StatusChange], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class OnlineCounts:
    users: int
    anonymous: int


@dataclass(kw_only=True, eq=False)
class PresenceService(GracePeriods):
    store: PresenceStore
    clock: Clock
    settings: Settings
    metrics: Metrics
    tracker: ActivityTracker
    connections: ConnectionRegistry
    profiles: Profiles
    writes: OnlineWrites

    def __post_init__(self) -> None:
        self._threshold = self.settings.offline_threshold_s
        # As many records as the cache holds subjects: a read of an unchanged room builds none.
        self._memo = RecordMemo(self._threshold, self.settings.profile_cache_size)
        self._listeners: list[StatusListener] = []
        # Closes Redis could not record yet (an outage, or a pool exhausted by a storm of
        # closes), with the moment each happened: (subject, sid) -> epoch seconds.
        self._unrecorded_closes: dict[tuple[SubjectRef, str], float] = {}
        self._grace_timers: set[asyncio.TimerHandle] = set()
        self._grace_tasks: set[asyncio.Task[None]] = set()

    def add_listener(self, listener: StatusListener) -> None:
        """Called with every transition this worker decides (each is decided by one worker)."""
        self._listeners.append(listener)

    async def activity(self, subject: SubjectRef) -> None:
        outcome = await self.tracker.record(subject)
        if outcome.became_online:
            # Announced before the request goes on, so that what the request changes next
            # (a manual status, say) is announced after it, in order.
            await self._announce_online(subject)

    async def connect(self, subject: SubjectRef, sid: str) -> None:
        """A connection authenticated. Its first connection anywhere makes the subject online."""
        became = await self.connections.connect(subject, sid, self.clock.now())
        await self.activity(subject)
        if became:
            self.writes.put(subject, True)
            await self._announce_online(subject)

    async def reassert(self, connections: Sequence[tuple[SubjectRef, str]]) -> None:
        """Register live connections again after Redis forgot them. Only a subject that was
        actually announced offline meanwhile (its stored flag says so) is announced online."""
        now = self.clock.now()
        for subject, sid in connections:
            if not await self.connections.connect(subject, sid, now):
                continue
            queued = self.writes.queued(subject)
            if queued is None:
                stored = await self.store.get_presence([subject])
                was_online = subject not in stored or stored[subject].is_online
            else:
                was_online = queued.online
            if not was_online:
                self.writes.put(subject, True)
                await self._announce_online(subject)

    async def forget_previous_life(self, worker_id: str) -> int:
        """At start-up: connections still registered under this worker's id belong to its
        previous life (a restart with a stable id, e.g. a container's host name) and are gone.
        Close them now; the grace period takes their subjects offline."""
        stale = await self.connections.of_worker(worker_id)
        now = self.clock.now()
        for subject, sid in stale:
            if await self.connections.disconnect(subject, sid, now):
                self._end_grace_later(ClosedSubject(subject, milliseconds(now)))
        return len(stale)

    async def announce_offline(self, subject: SubjectRef) -> None:
        """Tell everyone a subject went offline (the decision was taken atomically elsewhere)."""
        await self.announce(subject, before=None)

    async def sids(self, subject: SubjectRef) -> list[str]:
        return await self.connections.sids(subject)

    async def records(
        self, subjects: Sequence[SubjectRef], viewer: SubjectRef | None = None
    ) -> list[PresenceRecord]:
        """Presence of the subjects that exist, in the order asked, as ``viewer`` sees them:
        everyone's public view (as much of each last seen as the viewer may see), except the
        viewer's own record."""
        found, _ = await self.viewed_by(subjects, viewer)
        return found

    async def viewed_by(
        self, subjects: Sequence[SubjectRef], viewer: SubjectRef | None
    ) -> tuple[list[PresenceRecord], LastSeenPrivacy]:
        """:meth:`records`, and how much of its own last seen the viewer shares."""
        asked = subjects if viewer is None or viewer in subjects else [*subjects, viewer]
        if not asked:
            return [], LastSeenPrivacy.EXACT
        stored, live = await self._read(asked)
        privacy = privacy_of(stored, viewer)
        now = self.clock.now()
        record = self._memo.record
        return [
            record(stored[s], live[s], now, own=s == viewer, viewer_privacy=privacy)
            for s in subjects
            if s in stored
        ], privacy

    async def lookup(self, ids: Sequence[str]) -> list[tuple[PresenceRecord, bool]]:
        """The public record of each id that names a user or a guest, in the order asked
        (each once), and whether the subject has a live connection. Users first, then the
        ids no user has, as guests: a warm lookup of users reads no database, and a cold
        one reads each collection once, whatever the number of ids."""
        unique = list(dict.fromkeys(ids))
        users = [SubjectRef(SubjectKind.USER, i) for i in unique]
        stored, live = await self._read(users)
        guests = [SubjectRef(SubjectKind.ANONYMOUS, u.id) for u in users if u not in stored]
        if guests:
            more_stored, more_live = await self._read(guests)
            stored.update(more_stored)
            live.update(more_live)
        now = self.clock.now()
        found = []
        for user in users:
            subject = user if user in stored else SubjectRef(SubjectKind.ANONYMOUS, user.id)
            if subject in stored:
                state = live[subject]
                record = self._memo.record(stored[subject], state, now, own=False)
                found.append((record, state.connections > 0))
        return found

    async def record(
        self, subject: SubjectRef, viewer: SubjectRef | None = None
    ) -> PresenceRecord | None:
        found = await self.records([subject], viewer)
        return found[0] if found else None

    async def set_manual_status(
        self, subject: SubjectRef, choice: ManualChoice
    ) -> PresenceRecord | None:
        """Store the subject's choice; returns its own view of itself."""
        before = await self.record(subject)
        if before is None or not await self.store.set_manual_status(subject, choice):
            return None
        await self.profiles.status_changed(subject, choice)
        change = await self.announce(subject, before=before)
        return None if change is None else change.own

    async def announce(
        self,
        subject: SubjectRef,
        before: Status | PresenceRecord | None,
        *,
        was_away: bool = False,
        force: bool = False,
        only_if_changed: bool = False,
    ) -> StatusChange | None:
        """Tell everyone what the subject looks like now; None when it does not exist.
        ``before`` is what others saw until now (see :meth:`_change`); ``force`` announces it
        as a change whatever it was; ``only_if_changed`` says nothing when others see no
        change (the subject's own sockets then hear nothing either)."""
        change = await self._change(subject, before=before, was_away=was_away, force=force)
        if change is not None and (change.public_changed or not only_if_changed):
            await self._notify(change)
        return change

    async def force_online(self, subject: SubjectRef, online: bool) -> PresenceRecord | None:
        """Set the online flag by hand (the admin endpoint) and announce the change."""
        before = await self.record(subject)
        if before is None:
            return None
        now = self.clock.now()
        if online:
            await self.connections.mark_online(subject, now)
            self.writes.put(subject, True)
        else:
            last = await self.connections.mark_offline(subject)
            went = now if last is None else last
            await self.connections.raise_last_seen(subject, went)
            self.writes.put(subject, False, last_seen=from_epoch(went))
        # An operator's change is in the database when the call returns.
        await self.writes.flush()
        # The next activity must reach Redis to be able to bring the subject back online.
        self.tracker.forget(subject)
        change = await self._change(subject, before=before.status)
        if change is None:
            return None
        await self._notify(change)
        return change.public

    async def online_counts(self) -> OnlineCounts:
        counts = await self.connections.count_online(self.clock.now())
        return OnlineCounts(counts[SubjectKind.USER], counts[SubjectKind.ANONYMOUS])

    async def _read(
        self, subjects: Sequence[SubjectRef]
    ) -> tuple[dict[SubjectRef, StoredPresence], dict[SubjectRef, policy.LiveState]]:
        """The live state from Redis, and the stored fields of the subjects that exist from the
        cache (checked against the generation read in the same round trip). When Redis is
        down: the database alone."""
        try:
            states = await self.connections.live_states(subjects)
        except RedisError:
            self.metrics.redis_errors.labels(operation="read_presence").inc()
            stored = await self.store.get_presence(subjects)
            return stored, {
                s: stored_live_state(p, self.writes.queued(s)) for s, p in stored.items()
            }
        live = dict(zip(subjects, states, strict=True))
        stored = await self.profiles.stored(subjects, {s: live[s].generation for s in subjects})
        return stored, live

    async def _change(
        self,
        subject: SubjectRef,
        before: Status | PresenceRecord | None,
        *,
        was_away: bool = False,
        force: bool = False,
    ) -> StatusChange | None:
        """The subject's views now. ``before`` is its public record or status before the
        change; None means "it was online as its manual status says" (a grace period just
        ended; ``was_away``: and it was away automatically)."""
        # One read for all views: this runs on every transition (Redis, and the cache).
        found, states = await self._read([subject])
        if subject not in found:
            return None
        stored, live = found[subject], states[subject]
        now = self.clock.now()
        own = combine(stored, live, now, self._threshold, own=True)
        public = combine(stored, live, now, self._threshold, own=False)
        reserved = None
        if stored.privacy is LastSeenPrivacy.EXACT:
            # What viewers who hide their own last seen get (reciprocity): never the moment.
            reserved = combine(
                stored,
                live,
                now,
                self._threshold,
                own=False,
                viewer_privacy=LastSeenPrivacy.APPROXIMATE,
            )
        if isinstance(before, PresenceRecord):
            changed = _shown(public) != _shown(before)
            before_status = before.status
        else:
            if before is None:
                assert own.manual_status is not None
                before = policy.visible_status(True, own.manual_status, was_away)
            changed = public.status != before
            before_status = before
        return StatusChange(
            public=public,
            own=own,
            public_changed=changed or force,
            reserved=reserved,
            before=before_status,
        )

    async def _announce_online(self, subject: SubjectRef) -> None:
        """Announce a subject that just came online (it was offline to everyone before)."""
        try:
            change = await self._change(subject, before=Status.OFFLINE)
        except (RedisError, StoreError):
            log.warning("could not read presence for an announcement", exc_info=True)
            return
        if change is not None:
            await self._notify(change)

    async def _notify(self, change: StatusChange) -> None:
        self.metrics.status_changes.labels(to=change.own.status.value).inc()
        for listener in self._listeners:
            try:
                await listener(change)
            except Exception:  # one broken listener must not silence the others
                log.exception("status listener failed")


def _shown(record: PresenceRecord) -> tuple[object, ...]:
    """What a change of the subject's choice changes for others."""
    return (record.status, record.status_text, record.status_until, record.auto_away)
