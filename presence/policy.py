"""Pure presence decisions. Every function takes ``now`` and the settings it needs as arguments,
so the rules are tested with plain numbers and no services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from presence.domain import ManualStatus, Status, from_epoch, milliseconds


@dataclass(frozen=True, slots=True)
class LiveState:
    """What Redis knows about one subject right now."""

    marked_online: bool
    last_activity: float | None  # epoch seconds, precise to the millisecond
    connections: int = 0
    in_grace: bool = False  # the last connection closed less than the grace period ago
    last_seen: float | None = None  # epoch seconds it last went offline, as Redis knows it
    generation: int = 0  # of what workers cache of the subject (presence.profiles)


def is_online(live: LiveState, now: float, offline_threshold_s: float) -> bool:
    """Online while a connection lives, or while REST activity is fresher than the threshold.

    ``marked_online`` is cleared when a subject goes offline on purpose (its last connection
    closed, an admin, the sweep), so REST activity from before that moment cannot revive it.
    """
    if not live.marked_online:
        return False
    if live.connections > 0 or live.in_grace:
        return True
    # In whole milliseconds, as the Lua twin of this rule (presence.lua) compares them.
    return live.last_activity is not None and milliseconds(live.last_activity) >= milliseconds(
        now
    ) - milliseconds(offline_threshold_s)


def visible_status(online: bool, manual: ManualStatus) -> Status:
    """``invisible`` looks exactly like offline to everyone else."""
    return _VISIBLE[manual] if online else Status.OFFLINE


def own_status(online: bool, manual: ManualStatus) -> Status:
    """What the subject sees of itself: invisible hides it from others, not from itself."""
    return _OWN[manual] if online else Status.OFFLINE


# What an online subject's manual status shows (a lookup: ``Status(value)`` is ten times
# slower, and a presence read decides this for every member).
_OWN: dict[ManualStatus, Status] = {
    ManualStatus.ONLINE: Status.ONLINE,
    ManualStatus.AWAY: Status.AWAY,
    ManualStatus.DND: Status.DND,
    ManualStatus.INVISIBLE: Status.ONLINE,
}
_VISIBLE: dict[ManualStatus, Status] = {**_OWN, ManualStatus.INVISIBLE: Status.OFFLINE}


def last_seen(
    online: bool, stored_last_seen: datetime | None, last_activity: float | None
) -> datetime | None:
    """The moment the subject went offline, never the moment something noticed it.

    A REST-only subject that went quiet is offline from its real last activity on, even before
    the sweep has written that down.
    """
    if online or last_activity is None:
        return stored_last_seen
    derived = from_epoch(last_activity)
    if stored_last_seen is None or derived > stored_last_seen:
        return derived
    return stored_last_seen


def window_covers(window_ends: float, now_monotonic: float) -> bool:
    """True while a throttle window this worker saw is still open, so the activity can skip
    Redis. The local copy of a window always ends no later than the Redis key does."""
    return now_monotonic < window_ends


def cache_entry_expired(last_used: float, now_monotonic: float, max_age_s: float) -> bool:
    return now_monotonic - last_used > max_age_s
