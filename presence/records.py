"""How a subject's record is built from what is stored and what is live, for one viewer: a
pure function of its inputs (SPEC §3, §11), so every view (REST, snapshot, state, broadcast)
applies the same rules."""

from __future__ import annotations

from presence import policy
from presence.domain import (
    LastSeenPrivacy,
    ManualStatus,
    PresenceRecord,
    Status,
    SubjectRef,
    from_epoch,
    later,
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
    last_activity = live.last_activity
    if last_activity is None and stored.last_active_at is not None:
        last_activity = to_epoch(stored.last_active_at)
    last_active_at = None if last_activity is None else from_epoch(last_activity)
    # Redis has the latest offline; the database may not yet (it is written behind).
    went = None if live.last_seen is None else from_epoch(live.last_seen)
    seen = policy.last_seen(online, later(stored.last_seen, went), last_activity)
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
