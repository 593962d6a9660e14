"""Webhooks: every event of the change feed POSTed to ``PRESENCE_WEBHOOK_URL`` (SPEC §12).

* **Signed**: the body is the event as JSON; ``X-Presence-Signature: sha256=<hex>`` is the
  HMAC-SHA256 of exactly those bytes with ``PRESENCE_WEBHOOK_SECRET``, and
  ``X-Presence-Event-Id`` the feed id (a receiver drops a duplicate by it).
* **Exactly one worker delivers each event**: the workers read the stream as one consumer
  group (``webhooks``), each event handed to one of them. An event is acknowledged
  (``XACK``) only once the receiver answered 2xx.
* **Retried**: a refused or failed delivery is tried again after a doubling, jittered pause
  up to ``PRESENCE_WEBHOOK_MAX_BACKOFF_S``, for as long as it takes; meanwhile the worker keeps
  its claim on the event fresh, so no other worker takes it.
* **Resumed**: an event a worker read but never acknowledged (it was killed) is idle in the
  group's pending list; after ``PRESENCE_WEBHOOK_CLAIM_AFTER_S`` another worker claims it
  (``XAUTOCLAIM``) and delivers it. Nothing within the stream's retention is lost; an event can
  arrive twice (at least once), never out of the group's sight.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
from typing import Any, cast

import aiohttp
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from presence.feed import event_of
from presence.keys import Keys
from presence.metrics import Metrics

log = logging.getLogger(__name__)

GROUP = "webhooks"
BATCH = 20
POLL_S = 0.25
FIRST_BACKOFF_S = 0.5


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookDeliverer:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        metrics: Metrics,
        *,
        url: str,
        secret: bytes,
        consumer: str,
        timeout_s: float,
        max_backoff_s: float,
        claim_after_s: float,
    ) -> None:
        self._redis = redis
        self._stream = keys.events
        self._metrics = metrics
        self._url = url
        self._secret = secret
        self._consumer = consumer
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_backoff_s = max_backoff_s
        self._claim_after_ms = int(claim_after_s * 1000)
        self._retrying = 0

    async def _ensure_group(self) -> None:
        """The group starts at the end of the stream the first time webhooks are on."""
        try:
            await self._redis.xgroup_create(self._stream, GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        """The delivery loop (a supervised background task of every worker)."""
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            while True:
                try:
                    await self._ensure_group()
                    while True:
                        entries = await self._next_entries()
                        if not entries:
                            await self._update_lag()
                            await asyncio.sleep(POLL_S)
                            continue
                        for entry_id, fields in entries:
                            await self._deliver(session, entry_id, fields)
                except RedisError:
                    self._metrics.redis_errors.labels(operation="webhooks").inc()
                    await asyncio.sleep(1.0)

    async def _next_entries(self) -> list[tuple[str, dict[Any, Any]]]:
        """Events another worker left unacknowledged for too long first, then new ones."""
        claimed = await self._redis.xautoclaim(
            self._stream, GROUP, self._consumer, self._claim_after_ms, "0-0", count=BATCH
        )
        entries = [e for e in cast(list[Any], claimed[1]) if e[1] is not None]
        if not entries:
            read = await self._redis.xreadgroup(
                GROUP, self._consumer, {self._stream: ">"}, count=BATCH
            )
            entries = [] if not read else list(_stream_entries(read))
        return [(_text(entry_id), fields) for entry_id, fields in entries]

    async def _deliver(
        self, session: aiohttp.ClientSession, entry_id: str, fields: dict[Any, Any]
    ) -> None:
        body = orjson.dumps({"id": entry_id, **event_of(fields)})
        headers = {
            "Content-Type": "application/json",
            "X-Presence-Signature": signature(self._secret, body),
            "X-Presence-Event-Id": entry_id,
        }
        backoff = FIRST_BACKOFF_S
        attempt = 0
        while True:
            attempt += 1
            if await self._post(session, body, headers):
                await self._redis.xack(self._stream, GROUP, entry_id)
                self._metrics.webhook_delivered.inc()
                break
            self._metrics.webhook_failed.inc()
            if attempt == 1:
                self._retrying += 1
                self._metrics.webhook_retrying.set(self._retrying)
            # Full jitter: receivers coming back are not hit by every worker at once.
            await asyncio.sleep(random.uniform(backoff / 2, backoff))
            backoff = min(self._max_backoff_s, backoff * 2)
            # Still ours: a claim that stays fresh is never taken by another worker.
            await self._redis.xclaim(
                self._stream, GROUP, self._consumer, 0, [entry_id], justid=True
            )
        if attempt > 1:
            self._retrying -= 1
            self._metrics.webhook_retrying.set(self._retrying)

    async def _post(
        self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]
    ) -> bool:
        try:
            async with session.post(self._url, data=body, headers=headers) as resp:
                await resp.read()
                return 200 <= resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _update_lag(self) -> None:
        """Events not yet handed to any worker plus those handed but not acknowledged."""
        groups = await self._redis.xinfo_groups(self._stream)
        for group in groups:
            if _text(group.get("name", b"")) == GROUP:
                lag = group.get("lag") or 0
                self._metrics.webhook_lag.set(int(lag) + int(group.get("pending") or 0))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_entries(read: Any) -> list[tuple[Any, dict[Any, Any]]]:
    """The entries of an XREADGROUP answer of one stream (a deleted entry has no fields)."""
    streams = read.items() if isinstance(read, dict) else read
    entries: list[tuple[Any, dict[Any, Any]]] = []
    for _, stream_entries in streams:
        entries.extend((e[0], e[1]) for e in stream_entries if e[1] is not None)
    return entries
