"""The online flag and ``lastSeen`` reach the database behind the announcement, in bulks.

A transition is decided in Redis and announced at once; what the database keeps of it (the
online flag, ``lastSeen``) is queued here and written by one bulk per flush, every
``PRESENCE_WRITE_BEHIND_S`` (0.25 s by default, always within 1 s while the database answers).

* **Ordered per subject**: the queue holds one change per subject; a newer change replaces the
  flag of an older one and ``lastSeen`` only rises, so a bulk never writes an older state over
  a newer one, and a flush in flight never overtakes the next (one flush at a time).
* **Never lost while the worker lives**: a failed bulk goes back under the changes queued
  since, is counted (``presence_mongo_errors_total{operation="write_behind"}``) and retried
  with a doubling back-off (up to :data:`MAX_BACKOFF_S`); a shutdown drains the queue.
* **Re-derivable if the worker dies**: Redis holds the truth the queue only copies (the online
  rule, and ``lastSeen`` in its own sorted set), and every read combines it over the stored
  fields; the offlines a dead worker decided but did not write are journaled in Redis and
  written by the maintenance leader (:mod:`presence.maintenance.sweeper`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

from redis.exceptions import RedisError

from presence.domain import SubjectRef, later
from presence.metrics import Metrics
from presence.store.base import OnlineChange, PresenceStore, StoreError

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0

# Told which changes the database now has (they leave the journal of offlines in Redis).
Settle = Callable[[Sequence[OnlineChange]], Awaitable[None]]


def merged(older: OnlineChange, newer: OnlineChange) -> OnlineChange:
    """What storing ``older`` then ``newer`` leaves: the newer flag, the later ``lastSeen``."""
    last_seen = later(older.last_seen, newer.last_seen)
    return OnlineChange(newer.subject, newer.online, last_seen)


class OnlineWrites:
    def __init__(
        self,
        store: PresenceStore,
        metrics: Metrics,
        interval_s: float,
        settle: Settle | None = None,
    ) -> None:
        self._store = store
        self._settle = settle
        self._metrics = metrics
        self._interval_s = interval_s
        self._queued: dict[SubjectRef, OnlineChange] = {}
        self._in_flight: dict[SubjectRef, OnlineChange] = {}  # the bulk being written
        self._flushing = asyncio.Lock()
        self._failures = 0

    def put(self, subject: SubjectRef, online: bool, last_seen: datetime | None = None) -> None:
        change = OnlineChange(subject, online, last_seen)
        older = self._queued.get(subject)
        self._queued[subject] = change if older is None else merged(older, change)
        self._metrics.write_behind_queued.set(len(self._queued))

    def amend(self, subject: SubjectRef, online: bool) -> bool:
        """If a change of the subject is still on its way, queue this flag after it and return
        True; else return False and leave the write to the caller (who has one to make anyway)."""
        if subject not in self._queued and subject not in self._in_flight:
            return False
        self.put(subject, online)
        return True

    def queued(self, subject: SubjectRef) -> OnlineChange | None:
        """The change still on its way to the database, if any (it overrides what is stored):
        queued, or in the bulk being written."""
        newer, older = self._queued.get(subject), self._in_flight.get(subject)
        if newer is None or older is None:
            return newer or older
        return merged(older, newer)

    def __len__(self) -> int:
        """Subjects with a change not yet in the database."""
        return len(self._queued.keys() | self._in_flight.keys())

    async def flush(self) -> int:
        """Write everything queued in one bulk; returns how many changes were written. On a
        failure the changes are queued again (under the newer ones) and StoreError raised."""
        async with self._flushing:
            if not self._queued:
                return 0
            batch, self._queued = self._queued, {}
            self._in_flight = batch
            try:
                await self._store.set_online_many(list(batch.values()))
            except BaseException as exc:  # a cancelled flush (shutdown) loses nothing either
                self._requeue(batch.values())
                if isinstance(exc, StoreError):
                    self._metrics.mongo_errors.labels(operation="write_behind").inc()
                raise
            finally:
                self._in_flight = {}
                self._metrics.write_behind_queued.set(len(self._queued))
            self._metrics.write_behind_written.inc(len(batch))
            if self._settle is not None:
                try:
                    await self._settle(list(batch.values()))
                except RedisError:
                    # The journal keeps them; the leader writes them again, to the same effect.
                    self._metrics.redis_errors.labels(operation="write_behind_settle").inc()
            return len(batch)

    def _requeue(self, changes: Iterable[OnlineChange]) -> None:
        for change in changes:
            newer = self._queued.get(change.subject)
            self._queued[change.subject] = change if newer is None else merged(change, newer)

    async def run(self) -> None:
        """Flush every interval; after a failure, back off (doubling) before the next try."""
        while True:
            delay = min(self._interval_s * 2**self._failures, MAX_BACKOFF_S)
            await asyncio.sleep(delay)
            try:
                await self.flush()
                self._failures = 0
            except StoreError as exc:
                self._failures = min(self._failures + 1, 16)
                log.warning("write-behind flush failed, %d changes kept: %s", len(self), exc)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """At shutdown: write what is queued, retrying until ``timeout_s`` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._queued and loop.time() < deadline:
            try:
                await asyncio.wait_for(self.flush(), timeout=max(0.1, deadline - loop.time()))
            except (StoreError, TimeoutError):
                await asyncio.sleep(0.2)
        if self._queued:
            log.error("shutdown with %d online changes not written", len(self._queued))
