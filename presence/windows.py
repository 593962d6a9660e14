"""Throttle windows and the precise last activity in Redis, behind typed methods.

The tracker (:mod:`presence.throttle`) decides when to ask; this module says how: which keys a
claim touches and what the script's answer means.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

from presence.config import Settings
from presence.domain import SubjectRef, milliseconds
from presence.keys import Keys
from presence.lua import ACTIVITY, RAISE_LAST_ACTIVITY, SHORTEN_WINDOW


@dataclass(frozen=True, slots=True)
class Claim:
    """Redis's answer to one activity: whether this call opened the window, how long the
    window has left, and whether the subject was offline by the rule a moment before."""

    won: bool
    left_s: float
    became_online: bool


class ThrottleWindows:
    def __init__(
        self, redis: Redis, keys: Keys, *, interval_s: float, offline_threshold_s: float
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._interval_ms = milliseconds(interval_s)
        self._threshold_ms = milliseconds(offline_threshold_s)
        self._activity = redis.register_script(ACTIVITY)
        self._shorten = redis.register_script(SHORTEN_WINDOW)
        self._raise_last = redis.register_script(RAISE_LAST_ACTIVITY)

    @classmethod
    def from_settings(cls, redis: Redis, keys: Keys, settings: Settings) -> ThrottleWindows:
        return cls(
            redis,
            keys,
            interval_s=settings.throttle_interval_s,
            offline_threshold_s=settings.offline_threshold_s,
        )

    async def claim(self, subject: SubjectRef, token: str, now: float) -> Claim:
        """Record one activity at ``now``: claim the window (``SET NX PX``) with ``token``,
        raise the last activity, mark the subject online. Atomic."""
        member = subject.member
        bucket = self._keys.bucket(member)
        won, left_ms, became = await self._activity(
            keys=[
                bucket.throttle(member),
                bucket.windows,
                bucket.last_activity,
                bucket.online,
                bucket.connections(member),
                bucket.pending_offline,
            ],
            args=[token, self._interval_ms, subject.member, milliseconds(now), self._threshold_ms],
        )
        return Claim(won=bool(won), left_s=max(0, int(left_ms)) / 1000, became_online=bool(became))

    async def shorten(self, subject: SubjectRef, token: str, backoff_s: float, now: float) -> None:
        """Cut the window ``token`` opened down to ``backoff_s`` (only if it still owns it)."""
        await self._shorten(
            keys=[self._keys.throttle(subject), self._keys.bucket(subject.member).windows],
            args=[token, subject.member, milliseconds(backoff_s), milliseconds(now)],
        )

    async def raise_last_activity(self, last: dict[str, float]) -> None:
        """Members' latest activity (epoch seconds); a score only ever moves forward. One
        script per bucket, side by side (a cluster pipeline cannot carry scripts), each given
        its members packed in one argument."""
        rows: dict[str, list[str]] = {}
        for member, at in last.items():
            key = self._keys.bucket(member).last_activity
            rows.setdefault(key, []).append(f"{milliseconds(at)} {member}\n")
        await asyncio.gather(
            *(self._raise_last(keys=[key], args=["".join(lines)]) for key, lines in rows.items())
        )

    async def forget_ended(self, now: float) -> None:
        """Drop the record of windows that ended (their keys expired by themselves)."""
        pipe = self._redis.pipeline(transaction=False)
        for bucket in self._keys.every_bucket():
            pipe.zremrangebyscore(bucket.windows, "-inf", milliseconds(now))
        await pipe.execute()
