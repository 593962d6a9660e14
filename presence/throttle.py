"""The activity tracker: every activity lands here; at most one ``lastActiveAt`` write per subject
per throttle interval reaches the database, cluster-wide.

How a call is decided:

1. Local cache. If this worker already saw the subject's window open (it won the window, or
   Redis told it how long another worker's window has left), the call is throttled with no
   round trip. The cache can only skip work: its copy of a window never outlives the Redis key.
   Requests of one subject arriving while this worker is already asking Redis wait for that
   answer instead of asking again: one round trip per subject per worker per window.
2. Otherwise one Lua call does ``SET throttle NX PX interval``, raises the subject's precise
   last activity and marks it online, atomically, so exactly one worker in the cluster wins the
   window and exactly one sees an offline -> online transition.
3. The winner writes ``lastActiveAt`` with ``$max`` (it never moves backwards) off the request
   path. If the write fails the window is shortened to a retry backoff (only if this worker
   still owns it), so the next activity after it retries: no activity is lost to a failed write,
   and a failing database sees one attempt per subject per backoff, not one per request.

Precise last activity (to the millisecond) of cache hits is pushed to Redis in batches every
:data:`presence.counters.FLUSH_INTERVAL_S`, so the cluster knows it within 1 s (SPEC §4).
When Redis is down, calls are counted as failed updates and the request is still served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from presence import policy
from presence.clock import Clock
from presence.config import Settings
from presence.counters import (
    FAILED,
    FLUSH_INTERVAL_S,
    SUCCESSFUL,
    THROTTLED,
    TOTAL,
    ClusterCounters,
)
from presence.domain import SubjectKind, SubjectRef, from_epoch
from presence.metrics import Metrics
from presence.store.base import PresenceStore, StoreError
from presence.windows import ThrottleWindows
from presence.write_behind import OnlineWrites

log = logging.getLogger(__name__)

# One write per subject per window means this many subjects had their first activity inside one
# slow write; past it the database is clearly unwell and queueing more would only grow memory.
MAX_PENDING_WRITES = 10_000
# A failed write is retried by the subject's next activity after this long (or its window,
# when shorter): retries reach a failing database once per subject per second, not per request.
RETRY_BACKOFF_S = 1.0


@dataclass(slots=True)
class _Window:
    ends: float  # monotonic seconds
    last_used: float  # monotonic seconds
    member: str  # the subject's Redis member name, computed once


@dataclass(frozen=True, slots=True)
class ActivityOutcome:
    won_window: bool
    became_online: bool


# A call that changed nothing anywhere: answered from an open window, or not recorded at all
# because Redis failed (the request is still served).
_NOTHING_CHANGED = ActivityOutcome(won_window=False, became_online=False)


@dataclass(slots=True)
class _LocalCounts:
    """Hot-path counts of one subject kind not yet in Prometheus (see publish_metrics)."""

    calls: int = 0
    throttled: int = 0
    cache_hits: int = 0


@dataclass(kw_only=True, eq=False)
class ActivityTracker:
    windows: ThrottleWindows
    store: PresenceStore
    clock: Clock
    settings: Settings
    metrics: Metrics
    counters: ClusterCounters
    online_writes: OnlineWrites

    def __post_init__(self) -> None:
        self._cache: dict[SubjectRef, _Window] = {}
        self._pending_last: dict[str, float] = {}
        self._writes: set[asyncio.Task[None]] = set()
        self._inflight: dict[SubjectRef, asyncio.Future[None]] = {}
        self._local_counts = {kind: _LocalCounts() for kind in SubjectKind}
        self._backoff_s = min(self.settings.throttle_interval_s, RETRY_BACKOFF_S)

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def hit(self, subject: SubjectRef) -> bool:
        """The hot path, without a single await: True when this worker holds the subject's
        open window and has counted the activity inside it; False when the activity needs
        :meth:`record`. Every request of a busy subject lands here, so it is kept to a few
        dictionary operations; Prometheus sees these counts at the next flush or scrape."""
        window = self._cache.get(subject)
        if window is None:
            return False
        mono = self.clock.monotonic()
        if not policy.window_covers(window.ends, mono):
            return False
        self._hit(window, self.clock.now(), mono, self._local_counts[subject.kind])
        return True

    async def record(self, subject: SubjectRef) -> ActivityOutcome:
        if self.hit(subject):
            return _NOTHING_CHANGED
        now = self.clock.now()
        mono = self.clock.monotonic()
        counts = self._local_counts[subject.kind]

        inflight = self._inflight.get(subject)
        if inflight is not None:
            # This subject's window is being asked of Redis by another request right now: its
            # answer covers this request too, so a worker asks once per subject per window.
            await asyncio.wait([inflight])
            window = self._cache.get(subject)
            if window is not None and policy.window_covers(window.ends, self.clock.monotonic()):
                # A request that came meanwhile may have noted a later moment already.
                now = max(now, self._pending_last.get(window.member, 0.0))
                return self._hit(window, now, mono, counts)

        counts.calls += 1

        asked = asyncio.get_running_loop().create_future()
        self._inflight[subject] = asked
        try:
            return await self._ask_redis(subject, now, mono, counts)
        finally:
            del self._inflight[subject]
            asked.set_result(None)

    def _hit(
        self, window: _Window, now: float, mono: float, counts: _LocalCounts
    ) -> ActivityOutcome:
        window.last_used = mono
        # The latest moment wins (the hot path's moments only move forward; Redis keeps the
        # greatest in any case).
        self._pending_last[window.member] = now
        self.counters.add_throttled(now)
        counts.cache_hits += 1  # a call, and a throttled one: all three counted at publishing
        return _NOTHING_CHANGED

    async def _ask_redis(
        self, subject: SubjectRef, now: float, mono: float, counts: _LocalCounts
    ) -> ActivityOutcome:
        self.counters.add(TOTAL, now)
        token = f"{self.settings.worker_id}:{uuid.uuid4().hex}"
        try:
            claim = await self.windows.claim(subject, token, now)
        except RedisError as exc:
            self.metrics.redis_errors.labels(operation="activity").inc()
            log.warning("activity not recorded, Redis failed: %s", exc)
            self.counters.add(FAILED, now)
            self.metrics.db_updates.labels(result="failed").inc()
            return _NOTHING_CHANGED

        if claim.left_s > 0:
            self._cache[subject] = _Window(
                ends=mono + claim.left_s, last_used=mono, member=subject.member
            )
        if claim.won:
            # The online flag rides on the window's one write (SPEC §9: one write per window),
            # unless an older change of the subject is still queued behind an announcement:
            # then it goes after that one, in order.
            mark = claim.became_online and not self.online_writes.amend(subject, True)
            self._start_write(subject, now, token, mark_online=mark)
        else:
            self.counters.add(THROTTLED, now)
            counts.throttled += 1
            if claim.became_online:
                self.online_writes.put(subject, True)
        return ActivityOutcome(won_window=claim.won, became_online=claim.became_online)

    def _start_write(
        self, subject: SubjectRef, at: float, token: str, *, mark_online: bool
    ) -> None:
        if len(self._writes) >= MAX_PENDING_WRITES:
            log.warning("write queue full, dropping activity", extra={"subject": subject.member})
            self._spawn(self._fail(subject, at, token))
            return
        self._spawn(self._write(subject, at, token, mark_online=mark_online))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(
        self, subject: SubjectRef, at: float, token: str, *, mark_online: bool
    ) -> None:
        try:
            await self.store.record_activity(subject, from_epoch(at), mark_online=mark_online)
        except StoreError as exc:
            self.metrics.mongo_errors.labels(operation="record_activity").inc()
            log.warning("lastActiveAt write failed: %s", exc, extra={"subject": subject.member})
            await self._fail(subject, at, token)
            return
        self.counters.add(SUCCESSFUL, at)
        self.metrics.db_updates.labels(result="success").inc()

    async def _fail(self, subject: SubjectRef, at: float, token: str) -> None:
        """Count the failure and shorten the window to the backoff: the next activity after it
        retries."""
        self.counters.add(FAILED, at)
        self.metrics.db_updates.labels(result="failed").inc()
        mono = self.clock.monotonic()
        self._cache[subject] = _Window(
            ends=mono + self._backoff_s, last_used=mono, member=subject.member
        )
        try:
            await self.windows.shorten(subject, token, self._backoff_s, self.clock.now())
        except RedisError:
            # The window then simply expires; the next activity after it retries.
            self.metrics.redis_errors.labels(operation="release").inc()

    def forget(self, subject: SubjectRef) -> None:
        """Drop the local window so the subject's next activity goes to Redis (after a forced
        status change, which the next activity must be able to see)."""
        self._cache.pop(subject, None)

    def publish_metrics(self) -> None:
        """Move the hot path's plain counts into the Prometheus counters."""
        for kind, counts in self._local_counts.items():
            hits = counts.cache_hits  # each one a call, and a throttled one
            if counts.calls + hits:
                self.metrics.activity_calls.labels(kind=kind.value).inc(counts.calls + hits)
            if counts.throttled + hits:
                self.metrics.throttled_calls.labels(kind=kind.value).inc(counts.throttled + hits)
            if hits:
                self.metrics.local_cache_hits.inc(hits)
            # Reset in place: a call waiting on Redis still holds this object.
            counts.calls = counts.throttled = counts.cache_hits = 0
        self.metrics.throttle_cache_size.set(len(self._cache))

    async def flush(self) -> None:
        """Push precise last activity and counter deltas to Redis."""
        self.publish_metrics()
        if self._pending_last:
            pending, self._pending_last = self._pending_last, {}
            try:
                await self.windows.raise_last_activity(pending)
            except RedisError:
                self.metrics.redis_errors.labels(operation="last_activity").inc()
                for member, at in pending.items():
                    self._pending_last[member] = max(at, self._pending_last.get(member, 0))
        await self.counters.flush()

    def cleanup_cache(self) -> int:
        """Drop entries unused for longer than the configured max age; returns how many."""
        mono = self.clock.monotonic()
        max_age = self.settings.cache_max_age_s
        stale = [
            s
            for s, w in self._cache.items()
            if policy.cache_entry_expired(w.last_used, mono, max_age)
        ]
        for subject in stale:
            del self._cache[subject]
        self.metrics.throttle_cache_size.set(len(self._cache))
        return len(stale)

    async def run_flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except Exception:  # a background loop must outlive any single failure
                log.exception("flush failed")

    async def run_cache_cleanup(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cache_cleanup_interval_s)
            removed = self.cleanup_cache()
            if removed:
                log.info("throttle cache cleanup", extra={"removed": removed})

    async def drain(self, timeout_s: float = 5.0) -> None:
        """On shutdown: let pending writes finish (bounded), then flush what is left."""
        if self._writes:
            _, still = await asyncio.wait(set(self._writes), timeout=timeout_s)
            for task in still:
                task.cancel()
        with contextlib.suppress(RedisError):
            await self.flush()
