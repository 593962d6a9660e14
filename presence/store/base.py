"""The store protocol and its records. Both implementations pass ``tests/contract``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from presence.domain import LastSeenPrivacy, ManualStatus, Role, SubjectRef


class StoreError(Exception):
    """The database could not be reached or refused an operation."""


class DuplicateError(StoreError):
    """A unique field (the email) is already taken."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    username: str
    email: str
    password_hash: str
    role: Role
    is_active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ParticipantRecord:
    id: str
    conversation_id: str
    share_link_id: str
    nickname: str
    is_active: bool
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    id: str
    title: str
    member_ids: tuple[str, ...]
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ServiceTokenRecord:
    """A service's credential: only the SHA-256 of the token is kept."""

    name: str
    token_hash: str
    scopes: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ShareLinkRecord:
    id: str
    conversation_id: str
    created_by: str
    expires_at: datetime | None
    is_active: bool
    created_at: datetime


# A subject the sweep takes offline, with the lastSeen it gets (its real last activity).
Sweep = tuple[SubjectRef, datetime]


@dataclass(frozen=True, slots=True)
class StoredPresence:
    subject: SubjectRef
    name: str
    is_online: bool
    manual_status: ManualStatus
    last_active_at: datetime | None
    last_seen: datetime | None
    # A custom status: its text and when it ends (both None when none was chosen).
    status_text: str | None = None
    status_until: datetime | None = None
    # How much of its last seen the subject shows (guests choose nothing: exact).
    privacy: LastSeenPrivacy = LastSeenPrivacy.EXACT


@dataclass(frozen=True, slots=True)
class ManualChoice:
    """What a subject chose for itself: a status, and optionally a text and an end."""

    status: ManualStatus
    text: str | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class OnlineChange:
    """One subject's online flag to store, with the ``lastSeen`` it raises to (if any)."""

    subject: SubjectRef
    online: bool
    last_seen: datetime | None = None


# The store is one protocol per aggregate, so each service names exactly what it uses (a
# tracker needs presence writes, a sweeper fencing); :class:`Store` is all of them, which every
# implementation (memory, MongoDB) provides and the contract suite checks.


class Lifecycle(Protocol):
    async def ping(self) -> None:
        """Raise :class:`StoreError` unless the database answers."""

    async def ensure_indexes(self) -> None:
        """Create the indexes the queries need; safe to run at every start."""

    async def close(self) -> None: ...


class UserStore(Protocol):
    async def create_user(
        self,
        *,
        username: str,
        email: str,
        password_hash: str,
        role: Role,
        now: datetime,
        user_id: str | None = None,
    ) -> UserRecord:
        """Raise :class:`DuplicateError` when the (case-folded) email or the id is taken.
        ``user_id`` is the host platform's id of a provisioned user (generated when None)."""

    async def get_user(self, user_id: str) -> UserRecord | None: ...

    async def find_user_by_email(self, email: str) -> UserRecord | None: ...

    async def set_user_active(self, user_id: str, active: bool) -> bool: ...

    async def count_users(self) -> int: ...

    async def existing_user_ids(self, user_ids: Sequence[str]) -> set[str]: ...


class ParticipantStore(Protocol):
    async def create_participant(
        self, *, conversation_id: str, link_id: str, nickname: str, token_hash: str, now: datetime
    ) -> ParticipantRecord: ...

    async def get_participant(self, participant_id: str) -> ParticipantRecord | None: ...

    async def find_participant_by_token_hash(self, token_hash: str) -> ParticipantRecord | None: ...

    async def set_participant_active(self, participant_id: str, active: bool) -> bool: ...

    async def count_participants(self) -> int:
        """Active anonymous participants."""

    async def list_participants(self, conversation_id: str) -> list[ParticipantRecord]:
        """Active participants of one conversation."""


class ConversationStore(Protocol):
    async def create_conversation(
        self, *, title: str, member_ids: Sequence[str], created_by: str, now: datetime
    ) -> ConversationRecord: ...

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None: ...

    async def get_conversations(self, conversation_ids: Sequence[str]) -> list[ConversationRecord]:
        """The conversations of these ids that exist, in one read, in no particular order."""

    async def conversation_ids_of(self, user_id: str) -> list[str]:
        """The ids of the conversations the user is a member of, in no particular order."""

    async def list_conversations(self, user_id: str) -> list[ConversationRecord]:
        """Conversations the user is a member of, oldest first."""

    async def create_share_link(
        self, *, conversation_id: str, created_by: str, expires_at: datetime | None, now: datetime
    ) -> ShareLinkRecord: ...

    async def get_share_link(self, link_id: str) -> ShareLinkRecord | None: ...


class DirectoryStore(Protocol):
    """The host platform's users and conversations, pushed in by a directory sync."""

    async def put_user(
        self, *, user_id: str, username: str, is_active: bool, email: str, now: datetime
    ) -> UserRecord | None:
        """Create or update the user (no password: it logs in at the platform; ``email`` is
        its placeholder, used only on creation). Returns what it was before (None: new)."""

    async def put_conversation(
        self, *, conversation_id: str, title: str, member_ids: Sequence[str], now: datetime
    ) -> tuple[str, ...] | None:
        """Create or replace the conversation; returns its members before (None: new)."""

    async def delete_conversation(self, conversation_id: str) -> tuple[str, ...] | None:
        """Returns the members it had (None: there was none)."""


class ServiceTokenStore(Protocol):
    async def create_service_token(self, record: ServiceTokenRecord) -> None:
        """Raises :class:`DuplicateError` when the name is taken."""

    async def find_service_token(self, token_hash: str) -> ServiceTokenRecord | None: ...

    async def list_service_tokens(self) -> list[ServiceTokenRecord]:
        """Every token, by name."""

    async def delete_service_token(self, name: str) -> bool:
        """False when no token has that name."""


class PresenceStore(Protocol):
    async def record_activity(
        self, subject: SubjectRef, at: datetime, *, mark_online: bool
    ) -> bool:
        """Raise ``lastActiveAt`` to ``at`` (never lower it); optionally mark online.
        False when the subject does not exist."""

    async def set_online(
        self, subject: SubjectRef, online: bool, *, last_seen: datetime | None = None
    ) -> bool:
        """Store the online flag; ``last_seen`` is raised, never lowered."""

    async def set_online_many(self, changes: Sequence[OnlineChange]) -> int:
        """:meth:`set_online` for many subjects (at most one change each), in one round trip
        per collection and batch; returns how many subjects exist."""

    async def set_manual_status(self, subject: SubjectRef, choice: ManualChoice) -> bool:
        """Store the status with its text and end (a choice without them clears both)."""

    async def clear_expired_status(self, subject: SubjectRef, until: datetime) -> bool:
        """Back to automatic (``online``, no text), only if the status stored still ends at
        ``until``: a newer choice is never cleared. True when it was cleared."""

    async def expiring_statuses(self, limit: int) -> list[tuple[SubjectRef, datetime]]:
        """Subjects with a custom status that ends, and when, soonest first."""

    async def set_last_seen_privacy(self, user_id: str, privacy: LastSeenPrivacy) -> bool:
        """False when no user has that id."""

    async def get_presence(
        self, subjects: Sequence[SubjectRef]
    ) -> dict[SubjectRef, StoredPresence]:
        """Stored presence of the subjects that exist; unknown ones are left out."""


class FencingStore(Protocol):
    async def next_leader_epoch(self) -> int:
        """Increase and return the maintenance epoch (durable, survives a Redis restart)."""

    async def leader_epoch(self) -> int:
        """The newest maintenance epoch granted (0 before the first)."""

    async def sweep_offline(
        self, sweeps: Sequence[Sweep], *, epoch: int, worker_id: str, at: datetime
    ) -> int:
        """Maintenance writes, one batch: each subject offline, ``lastSeen`` raised to its
        time. A subject already written under a newer epoch, or gone, is refused. Returns how
        many were written."""


class MaintenanceStore(FencingStore, PresenceStore, Protocol):
    """What the maintenance leader writes: fenced sweeps, and the offlines a dead worker
    decided but did not write."""


class Store(
    Lifecycle,
    UserStore,
    ParticipantStore,
    ConversationStore,
    PresenceStore,
    FencingStore,
    ServiceTokenStore,
    DirectoryStore,
    Protocol,
):
    """Everything a worker keeps in the database."""
