"""Directory sync (SPEC §12): the host platform's users and conversations, pushed in by one of
its services under the platform's own ids. Every put is idempotent and says what changed; the
changes reach the live sockets of every worker through the listeners (the realtime layer
makes added members' sockets join the room and removed ones leave it, and closes a
deactivated user's sockets)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from presence.auth.platform import is_platform_id, placeholder_email
from presence.clock import Clock
from presence.contract.http import MAX_DIRECTORY_MEMBERS
from presence.domain import InvalidInput, NotFound, SubjectKind, SubjectRef, from_epoch
from presence.profiles import Profiles
from presence.store.base import DirectoryStore, UserRecord

# Generations are raised in pipelines of this many (a 100 000-member import is 100 round trips).
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class MembershipChange:
    conversation_id: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


class DirectoryListener(Protocol):
    async def on_membership(self, change: MembershipChange) -> None: ...

    async def on_deactivated(self, user_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class PutOutcome:
    created: bool
    added: int = 0
    removed: int = 0


def _valid_id(value: str, what: str) -> str:
    if not is_platform_id(value):
        raise InvalidInput(
            f"{what} must be 1 to 128 URL-safe characters (letters, digits, . _ ~ -)",
            "invalid_id",
        )
    return value


class Directory:
    def __init__(self, store: DirectoryStore, profiles: Profiles, clock: Clock) -> None:
        self._store = store
        self._profiles = profiles
        self._clock = clock
        self._listeners: list[DirectoryListener] = []

    def add_listener(self, listener: DirectoryListener) -> None:
        self._listeners.append(listener)

    async def put_user(self, user_id: str, username: str, is_active: bool) -> PutOutcome:
        _valid_id(user_id, "the user id")
        before: UserRecord | None = await self._store.put_user(
            user_id=user_id,
            username=username,
            is_active=is_active,
            email=placeholder_email(user_id),
            now=from_epoch(self._clock.now()),
        )
        await self._profiles.changed([SubjectRef(SubjectKind.USER, user_id)])
        if not is_active and (before is None or before.is_active):
            for listener in self._listeners:
                await listener.on_deactivated(user_id)
        return PutOutcome(created=before is None)

    @staticmethod
    def checked(conversation_id: str, member_ids: Sequence[str]) -> list[str]:
        """The members, each once, if the conversation may be stored (else InvalidInput):
        a batch checks all of its conversations before it stores any."""
        _valid_id(conversation_id, "the conversation id")
        members = list(dict.fromkeys(member_ids))
        if len(members) > MAX_DIRECTORY_MEMBERS:
            raise InvalidInput(
                f"a conversation has at most {MAX_DIRECTORY_MEMBERS} members", "too_many_members"
            )
        for member in members:
            _valid_id(member, "every member id")
        return members

    async def put_conversation(
        self, conversation_id: str, title: str, member_ids: Sequence[str]
    ) -> PutOutcome:
        members = self.checked(conversation_id, member_ids)
        before = await self._store.put_conversation(
            conversation_id=conversation_id,
            title=title,
            member_ids=members,
            now=from_epoch(self._clock.now()),
        )
        previous = set(before or ())
        added = tuple(m for m in members if m not in previous)
        kept = set(members)
        removed = tuple(m for m in (before or ()) if m not in kept)
        await self._changed(conversation_id, added + removed)
        if added or removed:
            await self._tell(MembershipChange(conversation_id, added, removed))
        return PutOutcome(created=before is None, added=len(added), removed=len(removed))

    async def delete_conversation(self, conversation_id: str) -> None:
        before = await self._store.delete_conversation(conversation_id)
        if before is None:
            raise NotFound("conversation not found")
        await self._changed(conversation_id, before)
        await self._tell(MembershipChange(conversation_id, (), before))

    async def _changed(self, conversation_id: str, member_ids: Sequence[str]) -> None:
        """Every worker's copy of these members' conversations, and of the conversation
        itself, is out of date from now on."""
        for start in range(0, len(member_ids), _CHUNK):
            chunk = member_ids[start : start + _CHUNK]
            await self._profiles.changed([SubjectRef(SubjectKind.USER, m) for m in chunk])
        await self._profiles.guests_changed(conversation_id)

    async def _tell(self, change: MembershipChange) -> None:
        for listener in self._listeners:
            await listener.on_membership(change)
