"""Pure presence decisions. Every function takes ``now`` and the settings it needs as arguments,
so the rules are tested with plain numbers and no services."""

from __future__ import annotations

import math
from datetime import datetime
from typing import NamedTuple

from presence.domain import (
    LastSeenApprox,
    LastSeenPrivacy,
    ManualStatus,
    Status,
    from_epoch,
    milliseconds,
    to_epoch,
)

# A custom status lasts at most this long (SPEC §11).
MAX_STATUS_LIFETIME_S = 30 * 24 * 3600.0
# How old a last seen is for each approximation, upper bounds in seconds.
_APPROXIMATIONS = (
    (3 * 24 * 3600.0, LastSeenApprox.RECENTLY),
    (7 * 24 * 3600.0, LastSeenApprox.WITHIN_WEEK),
    (30 * 24 * 3600.0, LastSeenApprox.WITHIN_MONTH),
)


class LiveState(NamedTuple):
    """What Redis knows about one subject right now (a tuple: a presence read builds one per
    member, and a frozen dataclass is built and compared several times more slowly)."""

    marked_online: bool
    last_activity: float | None  # epoch seconds, precise to the millisecond
    connections: int = 0
    in_grace: bool = False  # the last connection closed less than the grace period ago
    last_seen: float | None = None  # epoch seconds it last went offline, as Redis knows it
    generation: int = 0  # of what workers cache of the subject (presence.profiles)
    auto_away: bool = False  # connected, and no user activity for the idle time


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


def visible_status(online: bool, manual: ManualStatus, auto_away: bool = False) -> Status:
    """``invisible`` looks exactly like offline to everyone else; an idle subject that chose
    nothing but ``online`` looks away."""
    if not online:
        return Status.OFFLINE
    if auto_away and manual is ManualStatus.ONLINE:
        return Status.AWAY
    return _VISIBLE[manual]


def own_status(online: bool, manual: ManualStatus, auto_away: bool = False) -> Status:
    """What the subject sees of itself: invisible hides it from others, not from itself."""
    if not online:
        return Status.OFFLINE
    if auto_away and manual is ManualStatus.ONLINE:
        return Status.AWAY
    return _OWN[manual]


def shows_auto_away(online: bool, manual: ManualStatus, auto_away: bool) -> bool:
    """Automatic away changes only a subject that chose ``online``: a manual ``away``,
    ``dnd`` or ``invisible`` is never changed by it."""
    return online and auto_away and manual is ManualStatus.ONLINE


def status_expired(until: datetime | None, now: float) -> bool:
    """A custom status is over from its ``until`` on (to the millisecond), even before the
    worker that clears it has done so."""
    return until is not None and milliseconds(to_epoch(until)) <= milliseconds(now)


def until_problem(until: datetime, now: float) -> str | None:
    """Why ``until`` cannot end a custom status (None when it can): it must lie in the future,
    at most :data:`MAX_STATUS_LIFETIME_S` away."""
    at = to_epoch(until)
    if at <= now:
        return "until must be in the future"
    if at - now > MAX_STATUS_LIFETIME_S:
        return "until must be at most 30 days away"
    return None


def last_seen_shown(subject: LastSeenPrivacy, viewer: LastSeenPrivacy) -> LastSeenPrivacy:
    """How a viewer sees a subject's last seen: as the subject allows, and, for a viewer that
    does not share its own exact last seen, approximately at best (reciprocity)."""
    if subject is LastSeenPrivacy.HIDDEN:
        return LastSeenPrivacy.HIDDEN
    if subject is LastSeenPrivacy.APPROXIMATE or viewer is not LastSeenPrivacy.EXACT:
        return LastSeenPrivacy.APPROXIMATE
    return LastSeenPrivacy.EXACT


def approximate(last_seen: datetime | None, now: float) -> LastSeenApprox | None:
    if last_seen is None:
        return None
    age = now - to_epoch(last_seen)
    for bound, approximation in _APPROXIMATIONS:
        if age <= bound:
            return approximation
    return LastSeenApprox.LONG_AGO


def approximation_ends(last_seen: datetime, now: float) -> float:
    """The moment :func:`approximate` stops giving what it gives at ``now`` (``math.inf``
    once it says ``long_ago``, which it says for ever after)."""
    age = now - to_epoch(last_seen)
    for bound, _ in _APPROXIMATIONS:
        if age <= bound:
            return to_epoch(last_seen) + bound
    return math.inf


def is_idle(last_input: float | None, now: float, idle_away_s: float) -> bool:
    """No user activity for ``idle_away_s`` (0 turns automatic away off)."""
    if idle_away_s <= 0 or last_input is None:
        return False
    return milliseconds(last_input) <= milliseconds(now) - milliseconds(idle_away_s)


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
