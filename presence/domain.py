"""Value types shared by every layer. No I/O here."""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple


class SubjectKind(enum.StrEnum):
    USER = "user"
    ANONYMOUS = "anon"


class SubjectRef(NamedTuple):
    """Who presence is about: a registered user or an anonymous participant (a tuple: reads
    of many members build, hash and compare thousands, several times faster than a frozen
    dataclass's)."""

    kind: SubjectKind
    id: str

    @property
    def member(self) -> str:
        """The subject's name inside Redis sets and sorted sets."""
        return self.kind + ":" + self.id  # a StrEnum is its value (and + is the quickest)

    @classmethod
    def from_member(cls, member: str) -> SubjectRef:
        kind, _, ident = member.partition(":")
        return cls(SubjectKind(kind), ident)

    @property
    def is_anonymous(self) -> bool:
        return self.kind is SubjectKind.ANONYMOUS


class ManualStatus(enum.StrEnum):
    """What a subject may choose for itself."""

    ONLINE = "online"
    AWAY = "away"
    DND = "dnd"
    INVISIBLE = "invisible"


class Status(enum.StrEnum):
    """What others see."""

    ONLINE = "online"
    AWAY = "away"
    DND = "dnd"
    OFFLINE = "offline"


class LastSeenPrivacy(enum.StrEnum):
    """How much of its last seen a user shows others (SPEC §11)."""

    EXACT = "exact"
    APPROXIMATE = "approximate"
    HIDDEN = "hidden"


class LastSeenApprox(enum.StrEnum):
    """What ``approximate`` shows instead of the moment."""

    RECENTLY = "recently"  # within 3 days
    WITHIN_WEEK = "within_week"
    WITHIN_MONTH = "within_month"
    LONG_AGO = "long_ago"


class Role(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    subject: SubjectRef
    name: str
    role: Role = Role.USER
    conversation_id: str | None = None  # anonymous participants belong to exactly one

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(slots=True)
class PresenceRecord:
    """The presence of one subject as others see it; the same shape in every payload.

    Not frozen, though never changed once built: a presence read builds one per member, and a
    frozen dataclass is built more than twice as slowly."""

    subject: SubjectRef
    username: str
    is_online: bool
    status: Status
    last_active_at: datetime | None
    last_seen: datetime | None
    # Only in the subject's own view of itself: what it chose (others never see "invisible").
    manual_status: ManualStatus | None = None
    status_text: str | None = None
    status_until: datetime | None = None
    auto_away: bool = False
    last_seen_approx: LastSeenApprox | None = None
    _json: dict[str, object] | None = field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> dict[str, object]:
        """Built once per record (a kept record is given to many reads): shared, so never
        changed by a caller."""
        if self._json is not None:
            return self._json
        data: dict[str, object] = {
            "userId": self.subject.id,
            "username": self.username,
            "isAnonymous": self.subject.is_anonymous,
            "isOnline": self.is_online,
            "status": self.status.value,
            "lastActiveAt": iso(self.last_active_at),
            "lastSeen": iso(self.last_seen),
            "lastSeenApprox": None
            if self.last_seen_approx is None
            else self.last_seen_approx.value,
            "statusText": self.status_text,
            "statusUntil": iso(self.status_until),
            "autoAway": self.auto_away,
        }
        if self.manual_status is not None:
            data["manualStatus"] = self.manual_status.value
        self._json = data
        return data


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A transition: what everyone else now sees, and what the subject's own sockets see."""

    public: PresenceRecord
    own: PresenceRecord
    public_changed: bool
    # The public view for viewers who do not share their own exact last seen, when it differs
    # from ``public`` (the subject shares its exact last seen): it never tells the moment.
    reserved: PresenceRecord | None = None
    # What others saw before (None: not known): a large room's count follows online-ness.
    before: Status | None = None


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds, the one time format of every payload."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # Twice as fast as isoformat(): a presence read formats two moments per member.
    day = moment.toordinal()
    date = _DATES.get(day)
    if date is None:
        if len(_DATES) >= _MAX_DATES:
            _DATES.clear()
        date = _DATES[day] = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
    return "%s%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 (faster than an f-string here)
        date,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond // 1000,
    )


# The date part of recent moments, by day number (a few days are in use at any time).
_DATES: dict[int, str] = {}
_MAX_DATES = 1024


def milliseconds(seconds: float) -> int:
    """Seconds as whole milliseconds, truncated (a time never moves into the future): the
    resolution Redis keeps every time at, and the one every comparison of times uses, in
    Python and in Lua alike. The slack absorbs floating point: ``1700000000.3 * 1000`` is
    ``1700000000299.9998``, which is millisecond ...300, not ...299."""
    return math.floor(seconds * 1000 + _FLOAT_SLACK_MS)


# Far above the rounding error of epoch milliseconds in a double (~0.0002), far below 1 ms.
_FLOAT_SLACK_MS = 0.001


def from_epoch(seconds: float) -> datetime:
    # Millisecond precision is what MongoDB keeps; truncating here makes memory and Mongo agree.
    return datetime.fromtimestamp(milliseconds(seconds) / 1000, tz=UTC)


def later(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two moments, either of which may be unknown (``lastSeen`` only rises)."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def to_epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class DomainError(Exception):
    """A refusal the caller can act on; the API turns each kind into its HTTP status."""

    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(DomainError):
    code = "invalid_input"


# The Unicode control characters (category Cc: NUL, escapes, line breaks, C1 controls): never
# part of a name, an address or an id, and some MongoDB-compatible servers cannot even query a
# string with NUL in it. The same range is the ``pattern`` of every text field in the schemas.
CONTROL_RANGE = r"\x00-\x1f\x7f-\x9f"
NO_CONTROL_CHARACTERS = f"^[^{CONTROL_RANGE}]*$"
_CONTROL = re.compile(f"[{CONTROL_RANGE}]")


def has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class TooManyAttempts(DomainError):
    """Too many failed sign-in attempts; ``retry_after_s`` says when the window ends."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
