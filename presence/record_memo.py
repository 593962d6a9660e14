"""The records a worker built lately, kept while nothing they were built from has changed.

A presence read of a 200-member room builds 200 records (:func:`presence.records.combine`), and
the next read of the same room, a second later, would build the same 200 again. A record
depends on the subject's stored fields, its live state in Redis, the viewer's kind of view and
the time; so a kept record is given again only for the very stored copy it was built from (the
worker's cache hands out one object per generation, :mod:`presence.profiles`), an equal live
state (read from Redis every time, as before) and a moment before
:func:`presence.records.holds_until` says time alone could change it.
"""

from __future__ import annotations

from dataclasses import dataclass

from presence import policy
from presence.domain import LastSeenPrivacy, PresenceRecord, SubjectRef
from presence.records import combine, holds_until
from presence.store.base import StoredPresence


@dataclass(slots=True)
class _Kept:
    stored: StoredPresence  # the very copy it was built from
    live: policy.LiveState
    until: float
    record: PresenceRecord


class RecordMemo:
    """At most ``capacity`` records, the oldest forgotten first (0 keeps none); one per
    subject and kind of view, so a subject's new copy replaces its record instead of adding
    one."""

    def __init__(self, threshold_s: float, capacity: int) -> None:
        self._threshold_s = threshold_s
        self._capacity = capacity
        self._kept: dict[tuple[SubjectRef, bool, LastSeenPrivacy], _Kept] = {}

    def record(
        self,
        stored: StoredPresence,
        live: policy.LiveState,
        now: float,
        *,
        own: bool,
        viewer_privacy: LastSeenPrivacy = LastSeenPrivacy.EXACT,
    ) -> PresenceRecord:
        """What :func:`combine` gives for these inputs, built again only when it may differ."""
        key = (stored.subject, own, viewer_privacy)
        kept = self._kept.get(key)
        if kept is not None and kept.stored is stored and kept.live == live and now < kept.until:
            return kept.record
        record = combine(
            stored, live, now, self._threshold_s, own=own, viewer_privacy=viewer_privacy
        )
        if self._capacity:
            if kept is None and len(self._kept) >= self._capacity:
                del self._kept[next(iter(self._kept))]
            until = holds_until(
                stored, live, now, self._threshold_s, own=own, viewer_privacy=viewer_privacy
            )
            self._kept[key] = _Kept(stored, live, until, record)
        return record

    def __len__(self) -> int:
        return len(self._kept)
