"""Presence rules as pure functions (SPEC §3)."""

from __future__ import annotations

from presence import policy
from presence.domain import ManualStatus, Status, from_epoch

NOW = 1_800_000_000.0
THRESHOLD = 300.0


def test_rest_activity_keeps_a_marked_subject_online_until_the_threshold() -> None:
    fresh = policy.LiveState(marked_online=True, last_activity=NOW - THRESHOLD)
    stale = policy.LiveState(marked_online=True, last_activity=NOW - THRESHOLD - 0.001)
    assert policy.is_online(fresh, NOW, THRESHOLD)
    assert not policy.is_online(stale, NOW, THRESHOLD)


def test_a_live_connection_keeps_a_subject_online_however_quiet() -> None:
    quiet = policy.LiveState(marked_online=True, last_activity=NOW - 10_000, connections=1)
    assert policy.is_online(quiet, NOW, THRESHOLD)


def test_a_subject_taken_offline_on_purpose_stays_offline_despite_recent_activity() -> None:
    state = policy.LiveState(marked_online=False, last_activity=NOW - 1)
    assert not policy.is_online(state, NOW, THRESHOLD)


def test_invisible_looks_exactly_like_offline() -> None:
    assert policy.visible_status(True, ManualStatus.INVISIBLE) is Status.OFFLINE
    assert policy.visible_status(True, ManualStatus.DND) is Status.DND
    assert policy.visible_status(False, ManualStatus.AWAY) is Status.OFFLINE


def test_last_seen_of_a_quiet_subject_is_its_real_last_activity() -> None:
    last = NOW - 400
    assert policy.last_seen(False, None, last) == from_epoch(last)
    older = from_epoch(NOW - 1000)
    assert policy.last_seen(False, older, last) == from_epoch(last)
    newer = from_epoch(NOW - 100)
    assert policy.last_seen(False, newer, last) == newer
    assert policy.last_seen(True, older, last) == older


def test_a_local_window_only_covers_until_it_ends() -> None:
    assert policy.window_covers(10.0, 9.999)
    assert not policy.window_covers(10.0, 10.0)


def test_cache_entries_expire_after_their_max_age() -> None:
    assert not policy.cache_entry_expired(100.0, 700.0, 600.0)
    assert policy.cache_entry_expired(100.0, 700.001, 600.0)
