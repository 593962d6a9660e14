"""How a subject's record is built from what is stored and what is live, for one viewer: a
pure function of its inputs (SPEC §3, §11), so every view (REST, snapshot, state, broadcast)
applies the same rules."""

from __future__ import annotations

import math
from datetime import datetime

from presence import policy
from presence.domain import (
    LastSeenPrivacy,
    ManualStatus,
    PresenceRecord,
    Status,
    SubjectRef,
    from_epoch,
    later,
    milliseconds,
    to_epoch,
)
from presence.store.base import OnlineChange, StoredPresence


def combine(
    stored: StoredPresence,
    live: policy.LiveState,
    now: float,
    threshold_s: float,
    *,
    own: bool,
    viewer_privacy: LastSeenPrivacy = LastSeenPrivacy.EXACT,
) -> PresenceRecord:
    """The record of one subject as one viewer sees it (``own``: the subject itself)."""
    online = policy.is_online(live, now, threshold_s)
    manual, text, until = stored.manual_status, stored.status_text, stored.status_until
    if until is not None and policy.status_expired(until, now):
        # Over, even before the worker that ends it has cleared it everywhere.
        manual, text, until = ManualStatus.ONLINE, None, None
    auto_away = policy.shows_auto_away(online, manual, live.auto_away)
    if own:
        status = policy.own_status(online, manual, auto_away)
    else:
        status = policy.visible_status(online, manual, auto_away)
    last_activity = _last_activity(stored, live)
    last_active_at = None if last_activity is None else from_epoch(last_activity)
    seen = _last_seen(stored, live, online, last_activity)
    approx = None
    if not own:
        shown = policy.last_seen_shown(stored.privacy, viewer_privacy)
        if shown is not LastSeenPrivacy.EXACT:
            # The last activity would tell the moment just as well.
            if shown is LastSeenPrivacy.APPROXIMATE:
                approx = policy.approximate(seen, now)
            seen = last_active_at = None
    shows_choice = status is not Status.OFFLINE
    return PresenceRecord(
        subject=stored.subject,
        username=stored.name,
        is_online=shows_choice,
        status=status,
        last_active_at=last_active_at,
        last_seen=seen,
        manual_status=manual if own else None,
        status_text=text if shows_choice else None,
        status_until=until if shows_choice else None,
        auto_away=auto_away and shows_choice,
        last_seen_approx=approx,
    )


def holds_until(
    stored: StoredPresence,
    live: policy.LiveState,
    now: float,
    threshold_s: float,
    *,
    own: bool,
    viewer_privacy: LastSeenPrivacy = LastSeenPrivacy.EXACT,
) -> float:
    """The first moment (epoch seconds) at which :func:`combine` of the same inputs may give
    another record than at ``now``: until then time alone changes nothing, so the record can be
    kept (``math.inf``: only new inputs change it). Each end is taken a little early, never
    late: the end of an online that REST activity alone holds, the end of a custom status, the
    end of an approximate last seen's band."""
    ends = math.inf
    online = policy.is_online(live, now, threshold_s)
    if online and live.connections == 0 and not live.in_grace and live.last_activity is not None:
        # Online while ms(activity) >= ms(t) - ms(threshold): still so at this moment.
        ends = (milliseconds(live.last_activity) + milliseconds(threshold_s)) / 1000
    until = stored.status_until
    if until is not None and not policy.status_expired(until, now):
        ends = min(ends, (milliseconds(to_epoch(until)) - 1) / 1000)
    if not own and policy.last_seen_shown(stored.privacy, viewer_privacy) is (
        LastSeenPrivacy.APPROXIMATE
    ):
        seen = _last_seen(stored, live, online, _last_activity(stored, live))
        if seen is not None:
            ends = min(ends, policy.approximation_ends(seen, now))
    return ends


def _last_activity(stored: StoredPresence, live: policy.LiveState) -> float | None:
    if live.last_activity is None and stored.last_active_at is not None:
        return to_epoch(stored.last_active_at)
    return live.last_activity


def _last_seen(
    stored: StoredPresence, live: policy.LiveState, online: bool, last_activity: float | None
) -> datetime | None:
    # Redis has the latest offline; the database may not yet (it is written behind).
    went = None if live.last_seen is None else from_epoch(live.last_seen)
    return policy.last_seen(online, later(stored.last_seen, went), last_activity)


def privacy_of(
    stored: dict[SubjectRef, StoredPresence], viewer: SubjectRef | None
) -> LastSeenPrivacy:
    """What the viewer shares of its own last seen (a service or an unknown viewer: exact)."""
    found = None if viewer is None else stored.get(viewer)
    return LastSeenPrivacy.EXACT if found is None else found.privacy


def stored_live_state(stored: StoredPresence, queued: OnlineChange | None) -> policy.LiveState:
    """Presence as the database has it (Redis is down), with this worker's writes still
    queued for it on top."""
    last = None if stored.last_active_at is None else to_epoch(stored.last_active_at)
    online = stored.is_online if queued is None else queued.online
    seen = None if queued is None or queued.last_seen is None else to_epoch(queued.last_seen)
    return policy.LiveState(marked_online=online, last_activity=last, last_seen=seen)
