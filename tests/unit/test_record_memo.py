"""A kept record is the record :func:`combine` would build: for any inputs, every moment
before :func:`holds_until` gives the same record as the moment it was built, and the memo
builds again as soon as an input or that moment changes."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from presence import policy
from presence.domain import (
    LastSeenPrivacy,
    ManualStatus,
    SubjectKind,
    SubjectRef,
    from_epoch,
)
from presence.record_memo import RecordMemo
from presence.records import combine, holds_until
from presence.store.base import StoredPresence

NOW = 1_800_000_000.0
THRESHOLD_S = 300.0
DAY = 24 * 3600.0

moments = st.floats(min_value=NOW - 40 * DAY, max_value=NOW + 40 * DAY, allow_nan=False)
optional_moments = st.none() | moments


@st.composite
def inputs(draw: st.DrawFn) -> tuple[StoredPresence, policy.LiveState]:
    until = draw(st.none() | st.floats(min_value=NOW - DAY, max_value=NOW + 30 * DAY))
    stored = StoredPresence(
        subject=SubjectRef(SubjectKind.USER, "u1"),
        name="u1",
        is_online=draw(st.booleans()),
        manual_status=draw(st.sampled_from(ManualStatus)),
        last_active_at=None if (a := draw(optional_moments)) is None else from_epoch(a),
        last_seen=None if (s := draw(optional_moments)) is None else from_epoch(s),
        status_text=None if until is None else "in a meeting",
        status_until=None if until is None else from_epoch(until),
        privacy=draw(st.sampled_from(LastSeenPrivacy)),
    )
    live = policy.LiveState(
        marked_online=draw(st.booleans()),
        last_activity=draw(st.none() | st.floats(min_value=NOW - 2 * THRESHOLD_S, max_value=NOW)),
        connections=draw(st.integers(min_value=0, max_value=2)),
        in_grace=draw(st.booleans()),
        last_seen=draw(st.none() | st.floats(min_value=NOW - 40 * DAY, max_value=NOW)),
        auto_away=draw(st.booleans()),
    )
    return stored, live


@settings(max_examples=3000, deadline=None)
@given(
    inputs(),
    st.booleans(),
    st.sampled_from(LastSeenPrivacy),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_the_record_holds_until_the_moment_given(
    given_inputs: tuple[StoredPresence, policy.LiveState],
    own: bool,
    viewer: LastSeenPrivacy,
    fraction: float,
) -> None:
    stored, live = given_inputs
    built = combine(stored, live, NOW, THRESHOLD_S, own=own, viewer_privacy=viewer)
    ends = holds_until(stored, live, NOW, THRESHOLD_S, own=own, viewer_privacy=viewer)
    assert ends > NOW or ends == NOW  # never in the past
    horizon = ends if math.isfinite(ends) else NOW + 60 * DAY
    for later in (NOW + fraction * (horizon - NOW), math.nextafter(horizon, NOW)):
        if NOW <= later < ends:
            assert combine(stored, live, later, THRESHOLD_S, own=own, viewer_privacy=viewer) == (
                built
            )


def _stored(**changes: object) -> StoredPresence:
    fields: dict[str, object] = {
        "subject": SubjectRef(SubjectKind.USER, "u1"),
        "name": "u1",
        "is_online": True,
        "manual_status": ManualStatus.ONLINE,
        "last_active_at": None,
        "last_seen": None,
    }
    fields.update(changes)
    return StoredPresence(**fields)  # type: ignore[arg-type]


def test_the_ends_that_time_alone_brings() -> None:
    rest_only = policy.LiveState(marked_online=True, last_activity=NOW - 100)
    assert holds_until(_stored(), rest_only, NOW, THRESHOLD_S, own=False) == NOW + 200
    connected = policy.LiveState(marked_online=True, last_activity=NOW - 100, connections=1)
    assert holds_until(_stored(), connected, NOW, THRESHOLD_S, own=False) == math.inf
    ending = _stored(status_text="lunch", status_until=from_epoch(NOW + 60))
    assert holds_until(ending, connected, NOW, THRESHOLD_S, own=False) == NOW + 60 - 0.001
    offline = policy.LiveState(marked_online=False, last_activity=None, last_seen=NOW - DAY)
    approximate = _stored(privacy=LastSeenPrivacy.APPROXIMATE)
    # "recently" until three days after the last seen, then "within a week".
    assert holds_until(approximate, offline, NOW, THRESHOLD_S, own=False) == NOW + 2 * DAY
    assert holds_until(approximate, offline, NOW, THRESHOLD_S, own=True) == math.inf
    assert holds_until(_stored(), offline, NOW, THRESHOLD_S, own=False) == math.inf


def test_the_memo_builds_again_when_an_input_or_the_moment_changes() -> None:
    memo = RecordMemo(THRESHOLD_S, capacity=10)
    stored = _stored()
    live = policy.LiveState(marked_online=True, last_activity=NOW - 100)
    first = memo.record(stored, live, NOW, own=False)
    assert memo.record(stored, live, NOW + 1, own=False) is first
    assert first.is_online
    # Time alone: the REST-only online ended.
    ended = memo.record(stored, live, NOW + 201, own=False)
    assert ended is not first and not ended.is_online
    # A new live state, a new stored copy (even an equal one), another view: built again.
    moved = policy.LiveState(marked_online=True, last_activity=NOW - 50)
    assert memo.record(stored, moved, NOW, own=False).last_active_at == from_epoch(NOW - 50)
    again = _stored()
    assert memo.record(again, moved, NOW, own=False) is not memo.record(
        stored, moved, NOW, own=False
    )
    own = memo.record(stored, moved, NOW, own=True)
    assert own.manual_status is ManualStatus.ONLINE
    assert memo.record(stored, moved, NOW, own=False).manual_status is None


def test_the_memo_is_bounded_and_zero_keeps_nothing() -> None:
    memo = RecordMemo(THRESHOLD_S, capacity=3)
    live = policy.LiveState(marked_online=True, last_activity=NOW, connections=1)
    # New copies of one subject replace its record: they never pile up.
    for name in ("a", "b", "c", "d"):
        memo.record(_stored(name=name), live, NOW, own=False)
    assert len(memo) == 1
    copies = [_stored(subject=SubjectRef(SubjectKind.USER, f"u{i}")) for i in range(5)]
    for stored in copies:
        memo.record(stored, live, NOW, own=False)
    assert len(memo) == 3
    none = RecordMemo(THRESHOLD_S, capacity=0)
    record = none.record(copies[0], live, NOW, own=False)
    assert none.record(copies[0], live, NOW, own=False) is not record
    assert len(none) == 0


def test_a_kept_record_answers_like_a_new_one() -> None:
    memo = RecordMemo(THRESHOLD_S, capacity=10)
    stored = _stored(last_seen=datetime(2026, 1, 1, tzinfo=UTC))
    live = policy.LiveState(marked_online=False, last_activity=None)
    kept = memo.record(stored, live, NOW, own=False)
    assert memo.record(stored, live, NOW, own=False).to_json() == (
        combine(stored, live, NOW, THRESHOLD_S, own=False).to_json()
    )
    assert kept.to_json() is kept.to_json()  # formatted once
