"""The sweep the maintenance leader runs every ``PRESENCE_MAINTENANCE_INTERVAL_S``.

1. REST-only subjects that went quiet: online, no connection, no grace period, last activity
   older than the offline threshold → offline, ``lastSeen`` = their real last activity.
2. Dead workers (liveness expired): their connections are closed as of their last beat; the
   grace period then takes offline every subject left with none (the grace finisher runs on
   every worker, so this holds even if the leader dies next).
3. Offlines a worker decided and died before writing (the write-behind journal,
   :mod:`presence.write_behind`): written to the database with the ``lastSeen`` they had.
4. Custom statuses that end: the schedule Redis may have lost is restored from the database
   (:mod:`presence.choices`).
5. Throttle-window hygiene.

Every decision is a state-conditional Lua script, so two sweepers running at once reach the same
state and announce each transition once. Every database write is fenced by the lease epoch,
and the lease's validity is checked before each batch: a stalled ex-leader writes nothing.
Work goes in batches of :data:`BATCH`, yielding to the event loop between them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from presence import policy
from presence.choices import Choices
from presence.clock import Clock
from presence.config import Settings
from presence.domain import from_epoch
from presence.maintenance.lease import LeaderLease
from presence.metrics import Metrics
from presence.registry import ConnectionRegistry, WorkerRegistry
from presence.service import PresenceService
from presence.store.base import MaintenanceStore, OnlineChange, StoreError
from presence.windows import ThrottleWindows

log = logging.getLogger(__name__)

BATCH = 500
# A live worker writes its offlines within a second, and keeps retrying while the database
# fails; one journaled for longer than this belongs to a worker that died.
UNWRITTEN_AFTER_S = 10.0


@dataclass(frozen=True, slots=True)
class SweepReport:
    ran: bool
    quiet_offline: int = 0
    dead_workers: int = 0
    connections_closed: int = 0
    unwritten_written: int = 0
    ends_restored: int = 0


@dataclass(kw_only=True, eq=False)
class Sweeper:
    lease: LeaderLease
    connections: ConnectionRegistry
    workers: WorkerRegistry
    presence: PresenceService
    choices: Choices
    store: MaintenanceStore
    windows: ThrottleWindows
    clock: Clock
    settings: Settings
    metrics: Metrics

    async def _may_write(self) -> bool:
        """The lease is fresh and the database has granted no newer epoch."""
        if not self.lease.valid():
            return False
        if await self.store.leader_epoch() != self.lease.epoch:
            self.metrics.fenced_rejections.inc()
            return False
        return True

    async def sweep(self) -> SweepReport:
        if not await self._may_write():
            return SweepReport(ran=False)
        started = time.perf_counter()
        quiet = await self._sweep_quiet()
        dead, closed = await self._sweep_dead_workers()
        unwritten = await self._write_unwritten()
        restored = await self.choices.restore_schedule()
        await self.windows.forget_ended(self.clock.now())
        self.metrics.sweeps.inc()
        self.metrics.sweep_duration.observe(time.perf_counter() - started)
        return SweepReport(True, quiet, dead, closed, unwritten, restored)

    async def _write_unwritten(self) -> int:
        """Write the offlines whose worker died before its write-behind queue reached the
        database, with the online flag the subject has now (it may be back)."""
        lost = await self.connections.unwritten_offlines(self.clock.now() - UNWRITTEN_AFTER_S)
        if not lost or not await self._may_write():
            return 0
        states = await self.connections.live_states([c.subject for c in lost])
        now, threshold = self.clock.now(), self.settings.offline_threshold_s
        changes = [
            OnlineChange(
                c.subject, policy.is_online(state, now, threshold), from_epoch(c.closed_at)
            )
            for c, state in zip(lost, states, strict=True)
        ]
        await self.store.set_online_many(changes)
        await self.connections.settle_written(changes)
        log.warning(
            "wrote offlines a worker decided but did not write", extra={"count": len(changes)}
        )
        return len(changes)

    async def _sweep_quiet(self) -> int:
        cutoff = self.clock.now() - self.settings.offline_threshold_s
        taken = 0
        async for batch in self.connections.online_batches(BATCH):
            if not await self._may_write():
                break
            quiet = await self.connections.take_quiet_offline(batch, cutoff)
            if not quiet:
                continue
            taken += len(quiet)
            self.metrics.marked_offline.labels(reason="quiet").inc(len(quiet))
            # One database round trip for the batch, then its announcements side by side:
            # a sweep's time grows with its batches, not with one round trip per subject.
            written = await self.store.sweep_offline(
                [(q.subject, from_epoch(q.closed_at)) for q in quiet],
                epoch=self.lease.epoch,
                worker_id=self.lease.worker_id,
                at=from_epoch(self.clock.now()),
            )
            if written < len(quiet):
                self.metrics.fenced_rejections.inc(len(quiet) - written)
            # Redis decided these transitions once, atomically: they are announced either way.
            outcomes = await asyncio.gather(
                *(self.presence.announce_offline(q.subject) for q in quiet),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    log.warning("offline announcement failed: %s", outcome)
        return taken

    async def _sweep_dead_workers(self) -> tuple[int, int]:
        dead, closed = 0, 0
        for worker_id, last_beat in await self.workers.dead_workers():
            if worker_id == self.workers.worker_id or not await self._may_write():
                continue
            connections = await self.connections.of_worker(worker_id)
            for index, (subject, sid) in enumerate(connections):
                # Closed as of the worker's last beat; the grace period does the rest.
                if await self.connections.disconnect(subject, sid, last_beat, worker_id):
                    self.metrics.marked_offline.labels(reason="dead_worker").inc()
                closed += 1
                if index % BATCH == BATCH - 1:
                    await asyncio.sleep(0)
            await self.workers.forget(worker_id)
            dead += 1
            log.warning(
                "dead worker cleaned up",
                extra={"dead_worker": worker_id, "connections": len(connections)},
            )
        return dead, closed

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.maintenance_interval_s)
            try:
                await self.sweep()
            except (RedisError, StoreError) as exc:
                log.warning("sweep failed: %s", exc)
            except Exception:  # maintenance must outlive any single failure
                log.exception("sweep failed")
