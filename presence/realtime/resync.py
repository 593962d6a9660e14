"""Resynchronisation after an interrupted pub/sub listener (SPEC §11): whatever was published
while a worker's listener was away never reaches that worker's sockets, so as soon as it hears
again every local socket gets a fresh ``presence:snapshot {users, resync: true}`` that replaces
what the client knew.

Snapshots are built per subject (a user's tabs share one) in batches of :data:`BATCH` subjects
side by side, so ten thousand sockets do not all ask Redis and the database at the same moment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from presence.domain import Principal, SubjectRef
from presence.metrics import Metrics
from presence.realtime.admission import Admission
from presence.realtime.protocol import BoundedServer
from presence.store.base import StoreError

log = logging.getLogger(__name__)

BATCH = 50

# The authenticated, registered sockets of this worker: (sid, principal).
LocalSockets = Callable[[], list[tuple[str, Principal]]]


class Resync:
    def __init__(
        self, sio: BoundedServer, admission: Admission, local: LocalSockets, metrics: Metrics
    ) -> None:
        self._sio = sio
        self._admission = admission
        self._local = local
        self._metrics = metrics

    async def run(self) -> None:
        started = time.monotonic()
        by_subject: dict[SubjectRef, tuple[Principal, list[str]]] = {}
        for sid, principal in self._local():
            by_subject.setdefault(principal.subject, (principal, []))[1].append(sid)
        subjects = list(by_subject.values())
        sent = 0
        for start in range(0, len(subjects), BATCH):
            done = await asyncio.gather(
                *(self._one(p, sids) for p, sids in subjects[start : start + BATCH])
            )
            sent += sum(done)
        self._metrics.resyncs.inc()
        self._metrics.resync_sockets.inc(sent)
        log.warning(
            "pub/sub listener heard again: sockets resynchronised",
            extra={"sockets": sent, "seconds": round(time.monotonic() - started, 3)},
        )

    async def _one(self, principal: Principal, sids: list[str]) -> int:
        try:
            users = await self._admission.snapshot(principal)
        except (RedisError, StoreError):
            log.warning("no resync snapshot now", extra={"subject": principal.subject.member})
            return 0
        payload = {"users": users, "resync": True}
        for sid in sids:
            await self._sio.reply(sid, "presence:snapshot", payload)
        return len(sids)
