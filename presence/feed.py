"""The change feed: every announced transition, appended to the Redis stream ``<prefix>events``
for other services (SPEC §12), read with ``GET /api/service/events``.

* **What**: the public view only (``{subjectId, isAnonymous, status, isOnline, at}``), so an
  invisible subject's real state never reaches the feed; a change only its own sockets see
  (invisible and back) is not an event.
* **Once per transition**: the worker that decided a transition appends it (each is decided
  by exactly one worker), ``XADD … MAXLEN ~ PRESENCE_EVENTS_MAXLEN``.
* **Not lost in a Redis blip**: an event Redis refused waits, in order, with the ones after it,
  and is appended as soon as Redis answers (counted in
  ``presence_redis_errors_total{operation="events"}``); at most :data:`MAX_BACKLOG` wait.
* **Readers** page with a cursor (the last id they got) and wait up to
  ``PRESENCE_EVENTS_WAIT_S`` when nothing is new. Waiting polls the stream (a short ``XRANGE``
  every :data:`POLL_S`) instead of holding a blocking ``XREAD`` connection per reader, and
  wakes at once for events this worker appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence.clock import Clock
from presence.domain import InvalidInput, StatusChange, from_epoch, iso
from presence.keys import Keys
from presence.metrics import Metrics

log = logging.getLogger(__name__)

POLL_S = 0.25
MAX_BACKLOG = 10_000
BATCH = 500
MAX_LIMIT = 1000
_CURSOR = re.compile(r"^\d{1,20}(-\d{1,20})?$")


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[dict[str, Any]]
    next: str


def _decoded(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class EventFeed:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        clock: Clock,
        metrics: Metrics,
        *,
        maxlen: int,
        wait_s: float,
    ) -> None:
        self._redis = redis
        self._key = keys.events
        self._clock = clock
        self._metrics = metrics
        self._maxlen = maxlen
        self._wait_s = wait_s
        self._backlog: deque[dict[Any, Any]] = deque()
        self._appending = asyncio.Lock()
        self._appended = asyncio.Condition()

    async def on_change(self, change: StatusChange) -> None:
        """A listener of :class:`presence.service.PresenceService`."""
        if not change.public_changed:
            return
        public = change.public
        self._backlog.append(
            {
                "subjectId": public.subject.id,
                "isAnonymous": "1" if public.subject.is_anonymous else "0",
                "status": public.status.value,
                "isOnline": "1" if public.is_online else "0",
                "at": iso(from_epoch(self._clock.now())) or "",
            }
        )
        while len(self._backlog) > MAX_BACKLOG:
            self._backlog.popleft()
            self._metrics.events_dropped.inc()
        await self.flush()

    @property
    def waiting(self) -> int:
        """Events Redis has not taken yet."""
        return len(self._backlog)

    async def flush(self) -> None:
        """Append what waits, oldest first, in pipelines of up to :data:`BATCH`, one flush at
        a time (so order is kept). A pipeline that failed half-way is sent again whole: an
        event may then be in the stream twice (the feed is at least once), never missing."""
        async with self._appending:
            while self._backlog:
                batch = [self._backlog[i] for i in range(min(BATCH, len(self._backlog)))]
                pipe = self._redis.pipeline(transaction=False)
                for fields in batch:
                    pipe.xadd(self._key, fields, maxlen=self._maxlen, approximate=True)
                try:
                    await pipe.execute()
                except RedisError:
                    self._metrics.redis_errors.labels(operation="events").inc()
                    return
                for _ in batch:
                    self._backlog.popleft()
                self._metrics.events_appended.inc(len(batch))
        async with self._appended:
            self._appended.notify_all()

    async def run(self) -> None:
        """Retry what Redis refused (a background loop)."""
        while True:
            await asyncio.sleep(1.0)
            if self._backlog:
                await self.flush()

    async def read(self, after: str | None, limit: int) -> EventPage:
        """Events after the cursor (from the oldest kept without one), waiting up to
        ``wait_s`` when there are none yet."""
        if after is not None and not _CURSOR.match(after):
            raise InvalidInput("after must be an event id from this feed", "invalid_cursor")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be 1 to {MAX_LIMIT}", "invalid_limit")
        start = "-" if after is None else f"({after}"
        deadline = self._clock.monotonic() + self._wait_s
        while True:
            entries = cast(
                list[tuple[Any, Any]],
                await self._redis.xrange(self._key, min=start, max="+", count=limit),
            )
            if entries or self._clock.monotonic() >= deadline:
                break
            remaining = deadline - self._clock.monotonic()
            async with self._appended:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._appended.wait(), min(POLL_S, remaining))
        events = [{"id": _decoded(entry_id), **event_of(fields)} for entry_id, fields in entries]
        return EventPage(events, events[-1]["id"] if events else (after or "0-0"))


def event_of(fields: dict[Any, Any]) -> dict[str, Any]:
    """A stream entry's fields as the event a reader gets."""
    f = {_decoded(k): _decoded(v) for k, v in fields.items()}
    return {
        "subjectId": f["subjectId"],
        "isAnonymous": f["isAnonymous"] == "1",
        "status": f["status"],
        "isOnline": f["isOnline"] == "1",
        "at": f["at"],
    }
