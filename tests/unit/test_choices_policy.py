"""The rules of SPEC §11 as pure functions: a custom status that ends, automatic away and
last-seen privacy, and the record each viewer gets (:func:`presence.records.combine`)."""

from __future__ import annotations

import pytest

from presence import policy
from presence.domain import (
    LastSeenApprox,
    LastSeenPrivacy,
    ManualStatus,
    Status,
    SubjectKind,
    SubjectRef,
    from_epoch,
)
from presence.records import combine
from presence.store.base import StoredPresence

NOW = 1_800_000_000.0
THRESHOLD = 300.0
DAY = 86_400.0
ANN = SubjectRef(SubjectKind.USER, "ann")
CONNECTED = policy.LiveState(marked_online=True, last_activity=NOW - 1, connections=1)
GONE = policy.LiveState(marked_online=False, last_activity=NOW - 2 * DAY, last_seen=NOW - 2 * DAY)


def _stored(**fields: object) -> StoredPresence:
    base: dict[str, object] = {
        "subject": ANN,
        "name": "ann",
        "is_online": True,
        "manual_status": ManualStatus.ONLINE,
        "last_active_at": None,
        "last_seen": None,
    }
    return StoredPresence(**{**base, **fields})  # type: ignore[arg-type]


def test_a_status_end_must_be_in_the_future_and_at_most_thirty_days_away() -> None:
    assert policy.until_problem(from_epoch(NOW + 1), NOW) is None
    assert policy.until_problem(from_epoch(NOW + 30 * DAY), NOW) is None
    assert policy.until_problem(from_epoch(NOW), NOW) == "until must be in the future"
    assert policy.until_problem(from_epoch(NOW - 60), NOW) == "until must be in the future"
    assert policy.until_problem(from_epoch(NOW + 30 * DAY + 1), NOW) == (
        "until must be at most 30 days away"
    )


def test_a_status_is_over_from_its_end_on_to_the_millisecond() -> None:
    end = from_epoch(NOW)
    assert not policy.status_expired(end, NOW - 0.001)
    assert policy.status_expired(end, NOW)
    assert not policy.status_expired(None, NOW)


def test_an_ended_status_shows_as_automatic_before_anyone_clears_it() -> None:
    stored = _stored(
        manual_status=ManualStatus.DND, status_text="focus", status_until=from_epoch(NOW)
    )
    before = combine(stored, CONNECTED, NOW - 0.001, THRESHOLD, own=False)
    after = combine(stored, CONNECTED, NOW, THRESHOLD, own=False)
    assert (before.status, before.status_text, before.status_until) == (
        Status.DND,
        "focus",
        from_epoch(NOW),
    )
    assert (after.status, after.status_text, after.status_until) == (Status.ONLINE, None, None)


def test_text_and_end_are_null_whenever_the_subject_looks_offline() -> None:
    stored = _stored(
        manual_status=ManualStatus.INVISIBLE,
        status_text="hiding",
        status_until=from_epoch(NOW + 60),
    )
    public = combine(stored, CONNECTED, NOW, THRESHOLD, own=False)
    own = combine(stored, CONNECTED, NOW, THRESHOLD, own=True)
    assert (public.status, public.status_text, public.status_until) == (Status.OFFLINE, None, None)
    # The subject itself still sees what it chose.
    assert (own.status, own.status_text, own.manual_status) == (
        Status.ONLINE,
        "hiding",
        ManualStatus.INVISIBLE,
    )
    offline = combine(_stored(status_text="x"), GONE, NOW, THRESHOLD, own=False)
    assert (offline.status_text, offline.status_until) == (None, None)


def test_idle_is_no_user_input_for_the_idle_time_and_zero_turns_it_off() -> None:
    assert policy.is_idle(NOW - 300, NOW, 300)
    assert not policy.is_idle(NOW - 299.999, NOW, 300)
    assert not policy.is_idle(NOW - 10_000, NOW, 0)
    assert not policy.is_idle(None, NOW, 300)


def test_automatic_away_changes_only_a_subject_that_chose_online() -> None:
    away = policy.LiveState(marked_online=True, last_activity=NOW, connections=1, auto_away=True)
    chose_online = combine(_stored(), away, NOW, THRESHOLD, own=False)
    assert (chose_online.status, chose_online.auto_away) == (Status.AWAY, True)
    assert combine(_stored(), away, NOW, THRESHOLD, own=True).status is Status.AWAY
    for manual, shown in (
        (ManualStatus.DND, Status.DND),
        (ManualStatus.AWAY, Status.AWAY),
        (ManualStatus.INVISIBLE, Status.OFFLINE),
    ):
        record = combine(_stored(manual_status=manual), away, NOW, THRESHOLD, own=False)
        assert (record.status, record.auto_away) == (shown, False)
    assert not policy.shows_auto_away(False, ManualStatus.ONLINE, True)


@pytest.mark.parametrize(
    ("age_days", "approx"),
    [
        (0, LastSeenApprox.RECENTLY),
        (3, LastSeenApprox.RECENTLY),
        (3.01, LastSeenApprox.WITHIN_WEEK),
        (7, LastSeenApprox.WITHIN_WEEK),
        (8, LastSeenApprox.WITHIN_MONTH),
        (30, LastSeenApprox.WITHIN_MONTH),
        (31, LastSeenApprox.LONG_AGO),
    ],
)
def test_approximate_last_seen_buckets(age_days: float, approx: LastSeenApprox) -> None:
    assert policy.approximate(from_epoch(NOW - age_days * DAY), NOW) is approx
    assert policy.approximate(None, NOW) is None


def test_reciprocity_a_viewer_hiding_its_own_sees_approximately_at_best() -> None:
    exact, approx, hidden = (
        LastSeenPrivacy.EXACT,
        LastSeenPrivacy.APPROXIMATE,
        LastSeenPrivacy.HIDDEN,
    )
    assert policy.last_seen_shown(exact, exact) is exact
    assert policy.last_seen_shown(exact, approx) is approx
    assert policy.last_seen_shown(exact, hidden) is approx
    assert policy.last_seen_shown(approx, exact) is approx
    assert policy.last_seen_shown(hidden, exact) is hidden
    assert policy.last_seen_shown(hidden, hidden) is hidden


def test_privacy_applies_to_others_never_to_the_subject_itself() -> None:
    seen = from_epoch(NOW - 2 * DAY)
    for privacy, viewer, expected in (
        (LastSeenPrivacy.EXACT, LastSeenPrivacy.EXACT, (seen, None)),
        (LastSeenPrivacy.EXACT, LastSeenPrivacy.HIDDEN, (None, LastSeenApprox.RECENTLY)),
        (LastSeenPrivacy.APPROXIMATE, LastSeenPrivacy.EXACT, (None, LastSeenApprox.RECENTLY)),
        (LastSeenPrivacy.HIDDEN, LastSeenPrivacy.EXACT, (None, None)),
    ):
        stored = _stored(privacy=privacy, last_seen=seen, last_active_at=seen)
        public = combine(stored, GONE, NOW, THRESHOLD, own=False, viewer_privacy=viewer)
        assert (public.last_seen, public.last_seen_approx) == expected
        if expected[0] is None:
            # The last activity would tell the same moment.
            assert public.last_active_at is None
        own = combine(stored, GONE, NOW, THRESHOLD, own=True, viewer_privacy=viewer)
        assert (own.last_seen, own.last_seen_approx, own.last_active_at) == (seen, None, seen)


def test_the_record_carries_every_field_of_the_contract() -> None:
    until = from_epoch(NOW + 3600)
    stored = _stored(status_text="lunch", status_until=until, manual_status=ManualStatus.AWAY)
    data = combine(stored, CONNECTED, NOW, THRESHOLD, own=False).to_json()
    assert data["statusText"] == "lunch"
    assert data["statusUntil"] == (until.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    assert data["autoAway"] is False
    assert data["lastSeenApprox"] is None
