"""What a subject chooses and what its idleness decides (SPEC §11): a custom status that ends by
itself, and automatic away.

A custom status with an end is stored with the subject and scheduled in Redis (``<bucket>ends``,
member -> end ms). Every worker looks at the schedule every :data:`POLL_S`; one script per end
lets exactly one of them take it, and that worker clears the status in the database (only if it
still ends then) and announces it. A Redis that lost the schedule (a restart, a flush) gets it
back from the database: the maintenance leader restores it at every sweep, and an end taken by
a worker that died before clearing it is taken again :data:`RETAKE_AFTER_S` later. Until it is
cleared everywhere, every view already shows the status as over (:mod:`presence.records`).

Automatic away: user activity (a REST request, the socket event ``activity``, a new connection,
never a transport heartbeat) raises the subject's latest input in ``<bucket>input``. A
connected subject whose latest input is older than ``PRESENCE_IDLE_AWAY_S`` is taken away by
exactly one worker (a script moves it to ``<bucket>away``) and announced, if its manual status
is ``online``. Its next user activity, on any worker, takes it out and is announced once. A
worker skips the Redis write for a subject's input it wrote less than :attr:`Choices.input_every_s`
ago; the idle time is counted from the write, plus that much, so nobody goes away early and the
first activity after going away always reaches Redis (its local skip ended long before).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence import policy
from presence.clock import Clock
from presence.config import Settings
from presence.domain import (
    DomainError,
    InvalidInput,
    LastSeenPrivacy,
    ManualStatus,
    PresenceRecord,
    SubjectKind,
    SubjectRef,
    from_epoch,
    milliseconds,
    to_epoch,
)
from presence.keys import Keys, decoded
from presence.lua import END_STATUS, TAKE_AWAY, USER_INPUT
from presence.metrics import Metrics
from presence.service import PresenceService
from presence.store.base import ManualChoice, PresenceStore, StoreError

log = logging.getLogger(__name__)

PrivacyListener = Callable[[str, LastSeenPrivacy], Awaitable[None]]

# How often every worker looks for ended statuses and idle subjects: an end is announced
# within this (plus one transition) of its moment.
POLL_S = 0.25
# An end that left the schedule but is still in the database this long after it (its worker
# died in between, or Redis lost it) is scheduled again by the maintenance leader.
RETAKE_AFTER_S = 10.0
# Subjects looked at per bucket and poll.
BATCH = 500
# At most this long between two input writes of one subject by one worker.
MAX_INPUT_EVERY_S = 30.0


class ChoiceSchedule:
    """The Redis half: the schedule of ends, the latest user input and the away set."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._end = redis.register_script(END_STATUS)
        self._input = redis.register_script(USER_INPUT)
        self._take_away = redis.register_script(TAKE_AWAY)

    async def schedule(self, subject: SubjectRef, until: datetime | None) -> None:
        key = self._keys.bucket(subject.member).status_ends
        if until is None:
            await self._redis.zrem(key, subject.member)
        else:
            await self._redis.zadd(key, {subject.member: milliseconds(to_epoch(until))})

    async def restore(self, ends: list[tuple[SubjectRef, datetime]]) -> int:
        """Schedule ends the database has and Redis may have lost (never moving one Redis
        has); returns how many were missing."""
        pipe = self._redis.pipeline(transaction=False)
        for subject, until in ends:
            key = self._keys.bucket(subject.member).status_ends
            pipe.zadd(key, {subject.member: milliseconds(to_epoch(until))}, nx=True)
        return sum(int(added) for added in await pipe.execute()) if ends else 0

    async def due(self, now: float) -> list[tuple[SubjectRef, int]]:
        pipe = self._redis.pipeline(transaction=False)
        for bucket in self._keys.every_bucket():
            pipe.zrangebyscore(
                bucket.status_ends, "-inf", milliseconds(now), start=0, num=BATCH, withscores=True
            )
        return [
            (SubjectRef.from_member(decoded(member)), int(score))
            for pairs in await pipe.execute()
            for member, score in pairs
        ]

    async def end(self, subject: SubjectRef, until_ms: int) -> bool:
        """True for exactly one caller: the one that ends this status."""
        key = self._keys.bucket(subject.member).status_ends
        return bool(await self._end(keys=[key], args=[subject.member, until_ms]))

    async def user_input(self, subject: SubjectRef, now: float) -> bool:
        """Record user activity; True when it brought the subject back from away."""
        bucket = self._keys.bucket(subject.member)
        back = await self._input(
            keys=[bucket.user_input, bucket.away], args=[subject.member, milliseconds(now)]
        )
        return bool(back)

    async def take_idle(self, cutoff: float) -> list[SubjectRef]:
        """Connected subjects with no input since ``cutoff`` go away; returns them (each to
        exactly one caller)."""
        taken: list[SubjectRef] = []
        for bucket in self._keys.every_bucket():
            members = await self._redis.zrangebyscore(
                bucket.user_input, "-inf", milliseconds(cutoff), start=0, num=BATCH
            )
            if not members:
                continue
            went = await self._take_away(
                keys=[bucket.user_input, bucket.away],
                args=[milliseconds(cutoff), bucket.connections_prefix, *members],
            )
            taken += [SubjectRef.from_member(decoded(m)) for m in went]
        return taken


@dataclass(kw_only=True, eq=False)
class Choices:
    presence: PresenceService
    store: PresenceStore
    schedule: ChoiceSchedule
    clock: Clock
    settings: Settings
    metrics: Metrics

    def __post_init__(self) -> None:
        idle = self.settings.idle_away_s
        self.input_every_s = min(MAX_INPUT_EVERY_S, idle / 10)
        self._written: dict[SubjectRef, float] = {}  # monotonic moment of the last input write
        self._privacy_listeners: list[PrivacyListener] = []

    def add_privacy_listener(self, listener: PrivacyListener) -> None:
        self._privacy_listeners.append(listener)

    async def privacy(self, user_id: str) -> LastSeenPrivacy | None:
        """What the user shares of its last seen; None when no such user exists."""
        subject = SubjectRef(SubjectKind.USER, user_id)
        stored = await self.store.get_presence([subject])
        return stored[subject].privacy if subject in stored else None

    async def set_privacy(self, user_id: str, privacy: LastSeenPrivacy) -> bool:
        """Store the user's choice; every view from now on applies it (False: no such user)."""
        if not await self.store.set_last_seen_privacy(user_id, privacy):
            return False
        await self.presence.profiles.changed([SubjectRef(SubjectKind.USER, user_id)])
        for listener in self._privacy_listeners:
            await listener(user_id, privacy)
        return True

    async def set_status(
        self,
        subject: SubjectRef,
        status: ManualStatus,
        text: str | None = None,
        until: datetime | None = None,
    ) -> PresenceRecord | None:
        """Store the subject's choice and announce it; returns its own view of itself. A
        refused choice (``until`` past or too far) stores nothing."""
        if until is not None:
            problem = policy.until_problem(until, self.clock.now())
            if problem is not None:
                raise InvalidInput(problem, "invalid_until")
            until = from_epoch(to_epoch(until))  # the millisecond the database keeps
        choice = ManualChoice(status, text or None, until)
        record = await self.presence.set_manual_status(subject, choice)
        try:
            await self.schedule.schedule(subject, until)
        except RedisError:
            # The maintenance leader schedules it from the database at its next sweep.
            self.metrics.redis_errors.labels(operation="status_schedule").inc()
        return record

    def user_activity(self, subject: SubjectRef) -> Coroutine[Any, Any, None] | None:
        """Activity of the person behind the subject (not of its transport). Done at once, and
        None, in the common case (this worker holds the subject's open window and wrote its
        input lately): a busy subject's request awaits nothing for it. Otherwise what is left
        to do, for the caller to await."""
        counted = self.presence.tracker.hit(subject)
        if counted and self._input_noted(subject):
            return None
        return self._rest_of_activity(subject, counted=counted)

    async def _rest_of_activity(self, subject: SubjectRef, *, counted: bool) -> None:
        if not counted:
            await self.presence.activity(subject)
        await self.record_input(subject)

    def _input_noted(self, subject: SubjectRef) -> bool:
        """Whether this worker wrote the subject's input recently enough (or keeps none)."""
        if self.settings.idle_away_s <= 0:
            return True
        written = self._written.get(subject)
        return written is not None and self.clock.monotonic() - written < self.input_every_s

    async def record_input(self, subject: SubjectRef, *, always: bool = False) -> None:
        if self.settings.idle_away_s <= 0 or (not always and self._input_noted(subject)):
            return
        mono = self.clock.monotonic()
        # Taken before the round trip: concurrent requests of one subject write once.
        self._written[subject] = mono
        try:
            back = await self.schedule.user_input(subject, self.clock.now())
        except RedisError:
            self.metrics.redis_errors.labels(operation="user_input").inc()
            if self._written.get(subject) == mono:
                del self._written[subject]  # the next activity tries again
            return
        if back:
            await self.presence.announce(subject, before=None, was_away=True, only_if_changed=True)

    async def end_due(self) -> int:
        """End every custom status whose moment came; returns how many this worker ended."""
        ended = 0
        for subject, until_ms in await self.schedule.due(self.clock.now()):
            if not await self.schedule.end(subject, until_ms):
                continue  # another worker ended it
            stored = await self.store.get_presence([subject])
            if not await self.store.clear_expired_status(subject, from_epoch(until_ms / 1000)):
                continue  # replaced meanwhile, or already cleared
            ended += 1
            await self.presence.profiles.changed([subject])
            # Every view has shown it over since its moment; others hear of it now (an
            # offline subject showed no status: nothing changed for anyone). What they saw
            # until now is what the status showed (an invisible one: offline).
            own = await self.presence.record(subject, viewer=subject)
            if own is not None and own.is_online and subject in stored:
                chosen = stored[subject].manual_status
                before = policy.visible_status(True, chosen)
                await self.presence.announce(subject, before=before, force=True)
        return ended

    async def take_idle(self) -> int:
        """Take away the connected subjects idle for the idle time; returns how many."""
        idle = self.settings.idle_away_s
        if idle <= 0:
            return 0
        cutoff = self.clock.now() - idle - self.input_every_s
        went = 0
        for subject in await self.schedule.take_idle(cutoff):
            went += 1
            # A subject that chose away, dnd or invisible looks the same: nothing to say.
            await self.presence.announce(subject, before=None, only_if_changed=True)
        return went

    async def restore_schedule(self) -> int:
        """The maintenance leader: schedule again the ends Redis lost."""
        ends = await self.store.expiring_statuses(limit=10_000)
        retake_before = self.clock.now() - RETAKE_AFTER_S

        now = self.clock.now()
        wanted = [(s, u) for s, u in ends if to_epoch(u) > now or to_epoch(u) < retake_before]
        return await self.schedule.restore(wanted)

    def forget(self, older_than_s: float) -> None:
        """Drop input writes older than the skip window (they skip nothing any more)."""
        mono = self.clock.monotonic()
        self._written = {s: m for s, m in self._written.items() if mono - m < older_than_s}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await self.end_due()
                await self.take_idle()
                self.forget(self.input_every_s)
            except (RedisError, StoreError, DomainError):
                self.metrics.redis_errors.labels(operation="choices").inc()
            except Exception:  # a background loop must outlive any single failure
                log.exception("ending statuses or taking idle subjects away failed")
