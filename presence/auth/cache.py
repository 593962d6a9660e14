"""A bounded cache of verified credentials.

Verifying a JWT costs ~40 µs and resolving its user a database read; a request that repeats a
credential seen within :data:`RECHECK_S` skips both. Entries never outlive the credential's own
expiry, and are re-checked against the database at least every :data:`RECHECK_S`, which bounds
how long a deactivated account or a revoked participant keeps working.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from presence.domain import Principal, SubjectRef

# Deactivation must bite within 60 s (SPEC §6.2); half of it leaves room for clock and load.
RECHECK_S = 30.0
DEFAULT_CAPACITY = 10_000


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    valid_until: float  # epoch seconds


class VerifiedCache:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def get(self, key: str, now: float) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.valid_until:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.principal

    def put(self, key: str, principal: Principal, now: float, expires_at: float | None) -> None:
        valid_until = now + RECHECK_S
        if expires_at is not None:
            valid_until = min(valid_until, expires_at)
        if valid_until <= now:
            return
        self._entries[key] = _Entry(principal, valid_until)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def forget(self, subject: SubjectRef) -> None:
        """Drop every credential of the subject (it was deactivated): its next request is
        checked against the database."""
        for key in [k for k, e in self._entries.items() if e.principal.subject == subject]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
