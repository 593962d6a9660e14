"""In-memory store for embedded mode: same contract as MongoDB, nothing survives a restart."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from bson import ObjectId

from presence.domain import (
    LastSeenPrivacy,
    ManualStatus,
    Role,
    SubjectKind,
    SubjectRef,
    from_epoch,
    later,
    to_epoch,
)
from presence.store.base import (
    ConversationRecord,
    DuplicateError,
    ManualChoice,
    OnlineChange,
    ParticipantRecord,
    ServiceTokenRecord,
    ShareLinkRecord,
    StoredPresence,
    Sweep,
    UserRecord,
)


@dataclasses.dataclass
class _PresenceFields:
    is_online: bool = False
    manual_status: ManualStatus = ManualStatus.ONLINE
    status_text: str | None = None
    status_until: datetime | None = None
    privacy: LastSeenPrivacy = LastSeenPrivacy.EXACT
    last_active_at: datetime | None = None
    last_seen: datetime | None = None
    epoch: int = 0
    swept_by: str | None = None
    swept_at: datetime | None = None


def _to_ms(moment: datetime) -> datetime:
    """As MongoDB keeps a date: to the millisecond, in UTC."""
    return from_epoch(to_epoch(moment))


def _new_id() -> str:
    return str(ObjectId())


class MemoryStore:
    def __init__(self) -> None:
        self._users: dict[str, UserRecord] = {}
        self._participants: dict[str, ParticipantRecord] = {}
        self._token_hashes: dict[str, str] = {}
        self._conversations: dict[str, ConversationRecord] = {}
        self._links: dict[str, ShareLinkRecord] = {}
        self._presence: dict[SubjectRef, _PresenceFields] = {}
        self._leader_epoch = 0
        self._service_tokens: dict[str, ServiceTokenRecord] = {}

    async def ping(self) -> None:
        return None

    async def ensure_indexes(self) -> None:
        return None

    async def close(self) -> None:
        return None

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
        folded = email.casefold()
        if any(u.email == folded for u in self._users.values()) or user_id in self._users:
            raise DuplicateError("email or id already registered")
        user = UserRecord(user_id or _new_id(), username, folded, password_hash, role, True, now)
        self._users[user.id] = user
        self._presence[SubjectRef(SubjectKind.USER, user.id)] = _PresenceFields()
        return user

    async def get_user(self, user_id: str) -> UserRecord | None:
        return self._users.get(user_id)

    async def find_user_by_email(self, email: str) -> UserRecord | None:
        folded = email.casefold()
        return next((u for u in self._users.values() if u.email == folded), None)

    async def set_user_active(self, user_id: str, active: bool) -> bool:
        user = self._users.get(user_id)
        if user is None:
            return False
        self._users[user_id] = dataclasses.replace(user, is_active=active)
        return True

    async def count_users(self) -> int:
        return len(self._users)

    async def existing_user_ids(self, user_ids: Sequence[str]) -> set[str]:
        return {u for u in user_ids if u in self._users}

    async def create_participant(
        self, *, conversation_id: str, link_id: str, nickname: str, token_hash: str, now: datetime
    ) -> ParticipantRecord:
        participant = ParticipantRecord(_new_id(), conversation_id, link_id, nickname, True, now)
        self._participants[participant.id] = participant
        self._token_hashes[token_hash] = participant.id
        self._presence[SubjectRef(SubjectKind.ANONYMOUS, participant.id)] = _PresenceFields()
        return participant

    async def get_participant(self, participant_id: str) -> ParticipantRecord | None:
        return self._participants.get(participant_id)

    async def find_participant_by_token_hash(self, token_hash: str) -> ParticipantRecord | None:
        pid = self._token_hashes.get(token_hash)
        return None if pid is None else self._participants.get(pid)

    async def set_participant_active(self, participant_id: str, active: bool) -> bool:
        participant = self._participants.get(participant_id)
        if participant is None:
            return False
        self._participants[participant_id] = dataclasses.replace(participant, is_active=active)
        return True

    async def count_participants(self) -> int:
        return sum(1 for p in self._participants.values() if p.is_active)

    async def list_participants(self, conversation_id: str) -> list[ParticipantRecord]:
        return [
            p
            for p in self._participants.values()
            if p.conversation_id == conversation_id and p.is_active
        ]

    async def create_conversation(
        self, *, title: str, member_ids: Sequence[str], created_by: str, now: datetime
    ) -> ConversationRecord:
        conversation = ConversationRecord(_new_id(), title, tuple(member_ids), created_by, now)
        self._conversations[conversation.id] = conversation
        return conversation

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        return self._conversations.get(conversation_id)

    async def get_conversations(self, conversation_ids: Sequence[str]) -> list[ConversationRecord]:
        found = (self._conversations.get(i) for i in dict.fromkeys(conversation_ids))
        return [c for c in found if c is not None]

    async def conversation_ids_of(self, user_id: str) -> list[str]:
        return [c.id for c in self._conversations.values() if user_id in c.member_ids]

    async def list_conversations(self, user_id: str) -> list[ConversationRecord]:
        found = [c for c in self._conversations.values() if user_id in c.member_ids]
        return sorted(found, key=lambda c: (c.created_at, c.id))

    async def create_share_link(
        self, *, conversation_id: str, created_by: str, expires_at: datetime | None, now: datetime
    ) -> ShareLinkRecord:
        link = ShareLinkRecord(_new_id(), conversation_id, created_by, expires_at, True, now)
        self._links[link.id] = link
        return link

    async def get_share_link(self, link_id: str) -> ShareLinkRecord | None:
        return self._links.get(link_id)

    async def record_activity(
        self, subject: SubjectRef, at: datetime, *, mark_online: bool
    ) -> bool:
        fields = self._presence.get(subject)
        if fields is None:
            return False
        fields.last_active_at = later(fields.last_active_at, at)
        if mark_online:
            fields.is_online = True
        return True

    async def set_online(
        self, subject: SubjectRef, online: bool, *, last_seen: datetime | None = None
    ) -> bool:
        fields = self._presence.get(subject)
        if fields is None:
            return False
        fields.is_online = online
        fields.last_seen = later(fields.last_seen, last_seen)
        return True

    async def set_online_many(self, changes: Sequence[OnlineChange]) -> int:
        written = 0
        for change in changes:
            written += await self.set_online(
                change.subject, change.online, last_seen=change.last_seen
            )
        return written

    async def set_manual_status(self, subject: SubjectRef, choice: ManualChoice) -> bool:
        fields = self._presence.get(subject)
        if fields is None:
            return False
        fields.manual_status = choice.status
        fields.status_text = choice.text
        fields.status_until = None if choice.until is None else _to_ms(choice.until)
        return True

    async def clear_expired_status(self, subject: SubjectRef, until: datetime) -> bool:
        fields = self._presence.get(subject)
        if fields is None or fields.status_until is None or fields.status_until != _to_ms(until):
            return False
        fields.manual_status = ManualStatus.ONLINE
        fields.status_text = fields.status_until = None
        return True

    async def expiring_statuses(self, limit: int) -> list[tuple[SubjectRef, datetime]]:
        found = [(s, f.status_until) for s, f in self._presence.items() if f.status_until]
        return sorted(found, key=lambda item: item[1])[:limit]

    async def set_last_seen_privacy(self, user_id: str, privacy: LastSeenPrivacy) -> bool:
        fields = self._presence.get(SubjectRef(SubjectKind.USER, user_id))
        if fields is None:
            return False
        fields.privacy = privacy
        return True

    async def get_presence(
        self, subjects: Sequence[SubjectRef]
    ) -> dict[SubjectRef, StoredPresence]:
        found: dict[SubjectRef, StoredPresence] = {}
        for subject in subjects:
            fields = self._presence.get(subject)
            if fields is None:
                continue
            if subject.is_anonymous:
                name = self._participants[subject.id].nickname
            else:
                name = self._users[subject.id].username
            found[subject] = StoredPresence(
                subject,
                name,
                fields.is_online,
                fields.manual_status,
                fields.last_active_at,
                fields.last_seen,
                fields.status_text,
                fields.status_until,
                fields.privacy,
            )
        return found

    async def next_leader_epoch(self) -> int:
        self._leader_epoch += 1
        return self._leader_epoch

    async def leader_epoch(self) -> int:
        return self._leader_epoch

    async def sweep_offline(
        self, sweeps: Sequence[Sweep], *, epoch: int, worker_id: str, at: datetime
    ) -> int:
        written = 0
        for subject, last_seen in sweeps:
            fields = self._presence.get(subject)
            if fields is None or fields.epoch > epoch:
                continue
            fields.is_online = False
            fields.last_seen = later(fields.last_seen, last_seen)
            fields.epoch, fields.swept_by, fields.swept_at = epoch, worker_id, at
            written += 1
        return written

    async def create_service_token(self, record: ServiceTokenRecord) -> None:
        taken = record.name in self._service_tokens or any(
            t.token_hash == record.token_hash for t in self._service_tokens.values()
        )
        if taken:
            raise DuplicateError(f"service token {record.name!r} exists")
        self._service_tokens[record.name] = record

    async def find_service_token(self, token_hash: str) -> ServiceTokenRecord | None:
        for record in self._service_tokens.values():
            if record.token_hash == token_hash:
                return record
        return None

    async def list_service_tokens(self) -> list[ServiceTokenRecord]:
        return [self._service_tokens[name] for name in sorted(self._service_tokens)]

    async def delete_service_token(self, name: str) -> bool:
        return self._service_tokens.pop(name, None) is not None

    async def put_user(
        self, *, user_id: str, username: str, is_active: bool, email: str, now: datetime
    ) -> UserRecord | None:
        before = self._users.get(user_id)
        if before is None:
            folded = email.casefold()
            if any(u.email == folded for u in self._users.values()):
                raise DuplicateError("email already registered")
            user = UserRecord(user_id, username, folded, "", Role.USER, is_active, now)
            self._presence[SubjectRef(SubjectKind.USER, user_id)] = _PresenceFields()
        else:
            user = dataclasses.replace(before, username=username, is_active=is_active)
        self._users[user_id] = user
        return before

    async def put_conversation(
        self, *, conversation_id: str, title: str, member_ids: Sequence[str], now: datetime
    ) -> tuple[str, ...] | None:
        before = self._conversations.get(conversation_id)
        created = (before.created_by, before.created_at) if before else ("directory", now)
        self._conversations[conversation_id] = ConversationRecord(
            conversation_id, title, tuple(member_ids), *created
        )
        return None if before is None else before.member_ids

    async def delete_conversation(self, conversation_id: str) -> tuple[str, ...] | None:
        before = self._conversations.pop(conversation_id, None)
        return None if before is None else before.member_ids
