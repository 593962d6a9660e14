"""Grace periods (SPEC §3): after a subject's last connection closes, it goes offline once the
grace ends without a new connection, decided by exactly one worker (the registry's script).

The worker that recorded the close ends the grace on a timer, so the offline is announced as
the grace ends; every worker also looks, every :data:`GRACE_POLL_S`, for graces that ended more
than :data:`GRACE_FALLBACK_LAG_S` ago (their worker died, or its timer could not reach Redis)
and finishes them. A close Redis could not record is kept with its own time and recorded as
soon as Redis answers. This is the part of :class:`presence.service.PresenceService` that does
it (a mixin: the service's fields are its state).
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from presence.clock import Clock
from presence.config import Settings
from presence.domain import SubjectRef, from_epoch, milliseconds
from presence.metrics import Metrics
from presence.registry import ClosedSubject, ConnectionRegistry
from presence.store.base import StoreError
from presence.write_behind import OnlineWrites

log = logging.getLogger(__name__)

# The worker that saw a subject's last connection close ends the grace itself, on a timer, so
# the offline is announced as the grace ends. Every worker also looks, this often, for graces
# that ended more than GRACE_FALLBACK_LAG_S ago (their worker died, or its timer could not
# reach Redis) and finishes them: the fallback announces within grace + 1.25 s.
GRACE_POLL_S = 0.25
GRACE_FALLBACK_LAG_S = 1.0
# A timer that fires this much before the injected clock says the grace ended leaves the
# subject to the fallback (only a test's frozen clock is that far behind).
_TIMER_TOLERANCE_S = 0.05


class GracePeriods:
    clock: Clock
    settings: Settings
    metrics: Metrics
    connections: ConnectionRegistry
    writes: OnlineWrites
    # Closes Redis could not record yet, with the moment each happened (set by the service).
    _unrecorded_closes: dict[tuple[SubjectRef, str], float]
    _grace_timers: set[asyncio.TimerHandle]
    _grace_tasks: set[asyncio.Task[None]]

    async def announce_offline(self, subject: SubjectRef) -> None:
        raise NotImplementedError

    async def disconnect(self, subject: SubjectRef, sid: str) -> None:
        """A connection closed. After the last one, the subject goes offline once the grace
        period ends without a new connection (see :meth:`finish_graces`).

        Never raises: a close Redis cannot record now is kept, with its own time, and
        recorded by the grace finisher as soon as Redis answers. A connection that is gone
        must not stay registered while its worker lives (that is a ghost no sweep removes)."""
        closed_at = self.clock.now()
        try:
            last = await self.connections.disconnect(subject, sid, closed_at)
        except RedisError:
            self.metrics.redis_errors.labels(operation="disconnect").inc()
            self._unrecorded_closes[(subject, sid)] = closed_at
            return
        if last:
            self._end_grace_later(ClosedSubject(subject, milliseconds(closed_at)))

    def _end_grace_later(self, closed: ClosedSubject) -> None:
        """This worker recorded a subject's last close: end its grace when it ends (at once
        for a close recorded late)."""
        loop = asyncio.get_running_loop()
        ends_in = closed.closed_ms / 1000 + self.settings.offline_grace_s - self.clock.now()

        def fire() -> None:
            self._grace_timers.discard(handle)
            task = loop.create_task(self._end_grace(closed))
            self._grace_tasks.add(task)
            task.add_done_callback(self._grace_tasks.discard)

        handle = loop.call_later(max(0.0, ends_in), fire)
        self._grace_timers.add(handle)

    async def _end_grace(self, closed: ClosedSubject) -> None:
        """The grace of one close ended: offline now, unless a connection came back (the
        registry's script decides, so exactly one of this timer and the fallback does it)."""
        due = closed.closed_ms / 1000 + self.settings.offline_grace_s - _TIMER_TOLERANCE_S
        if self.clock.now() < due:
            return
        try:
            if await self.connections.finish_offline(closed):
                await self._went_offline(closed)
        except (RedisError, StoreError):
            self.metrics.redis_errors.labels(operation="finish_graces").inc()
        except Exception:
            log.exception("ending a grace period failed")

    @property
    def graces_timed(self) -> int:
        """Grace periods this worker's timers are waiting on."""
        return len(self._grace_timers)

    async def stop_grace_timers(self) -> None:
        """At shutdown: the graces still running are left to the other workers' fallback."""
        for handle in self._grace_timers:
            handle.cancel()
        self._grace_timers.clear()
        for task in list(self._grace_tasks):
            task.cancel()
        if self._grace_tasks:
            await asyncio.wait(self._grace_tasks, timeout=2)

    async def record_closes(self) -> None:
        """Record the closes Redis missed, oldest first."""
        for (subject, sid), closed_at in sorted(
            self._unrecorded_closes.items(), key=lambda item: item[1]
        ):
            if await self.connections.disconnect(subject, sid, closed_at):
                self._end_grace_later(ClosedSubject(subject, milliseconds(closed_at)))
            del self._unrecorded_closes[(subject, sid)]

    async def finish_graces(self, lag_s: float = 0.0) -> int:
        """Take offline every subject whose grace period ended at least ``lag_s`` ago; returns
        how many went offline. Every worker runs this; the registry lets exactly one of them
        (or the timer of the worker that saw the close) finish each close."""
        ended_before = self.clock.now() - self.settings.offline_grace_s - lag_s
        due = await self.connections.graces_ended(ended_before)
        went = 0
        for closed in due:
            if await self.connections.finish_offline(closed):
                went += 1
                await self._went_offline(closed)
        return went

    async def _went_offline(self, closed: ClosedSubject) -> None:
        # lastSeen is the moment the last connection closed, not the moment we noticed; Redis
        # has it already (the script that decided the offline raised it), the database soon.
        self.writes.put(closed.subject, False, last_seen=from_epoch(closed.closed_at))
        await self.announce_offline(closed.subject)

    async def run_grace_finisher(self) -> None:
        while True:
            await asyncio.sleep(GRACE_POLL_S)
            try:
                await self.record_closes()
                await self.finish_graces(lag_s=GRACE_FALLBACK_LAG_S)
            except (RedisError, StoreError):
                self.metrics.redis_errors.labels(operation="finish_graces").inc()
            except Exception:  # a background loop must outlive any single failure
                log.exception("finishing grace periods failed")
