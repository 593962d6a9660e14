"""Conversations, membership and share links: who shares a conversation with whom."""

from __future__ import annotations

from collections.abc import Sequence

from presence.clock import Clock
from presence.domain import (
    Forbidden,
    InvalidInput,
    NotFound,
    Principal,
    SubjectKind,
    SubjectRef,
    from_epoch,
)
from presence.profiles import Profiles
from presence.store.base import ConversationRecord, ShareLinkRecord, Store

MAX_MEMBERS = 1000


class Conversations:
    def __init__(
        self, store: Store, clock: Clock, profiles: Profiles, *, fanout_limit: int = 500
    ) -> None:
        self._store = store
        self._clock = clock
        self._profiles = profiles  # who is in which conversation, as announcements read it
        # Above this many members a conversation is large (presence.rooms): its members'
        # presence is asked for, never pushed or listed whole.
        self.fanout_limit = fanout_limit

    def is_large(self, conversation: ConversationRecord) -> bool:
        return len(conversation.member_ids) > self.fanout_limit

    async def create(
        self, owner: Principal, title: str, member_ids: Sequence[str]
    ) -> ConversationRecord:
        _require_user(owner)
        members = list(dict.fromkeys([owner.subject.id, *member_ids]))
        if len(members) > MAX_MEMBERS:
            raise InvalidInput(f"a conversation has at most {MAX_MEMBERS} members")
        unknown = set(members) - await self._store.existing_user_ids(members)
        if unknown:
            raise InvalidInput(
                f"unknown member ids: {', '.join(sorted(unknown))}", "unknown_member"
            )
        conversation = await self._store.create_conversation(
            title=title,
            member_ids=members,
            created_by=owner.subject.id,
            now=from_epoch(self._clock.now()),
        )
        await self._profiles.changed([SubjectRef(SubjectKind.USER, m) for m in members])
        return conversation

    async def list_for(self, user: Principal) -> list[ConversationRecord]:
        _require_user(user)
        return await self._store.list_conversations(user.subject.id)

    async def visible_to(self, viewer: Principal, conversation_id: str) -> ConversationRecord:
        """The conversation, if the viewer is a member (users) or belongs to it (guests)."""
        conversation, _ = await self.visible_with_members(viewer, conversation_id)
        return conversation

    async def record(self, conversation_id: str) -> ConversationRecord | None:
        """The conversation, whoever asks (the worker's cache)."""
        conversation, _ = await self._profiles.conversation(conversation_id)
        return conversation

    async def visible_with_members(
        self, viewer: Principal, conversation_id: str
    ) -> tuple[ConversationRecord, list[SubjectRef]]:
        """The conversation the viewer may see and its members (from the worker's cache)."""
        conversation, guests = await self._profiles.conversation(conversation_id)
        if conversation is None:
            raise NotFound("conversation not found")
        if viewer.subject.is_anonymous:
            if viewer.conversation_id != conversation.id:
                raise Forbidden("not a member of this conversation", "not_member")
        elif viewer.subject.id not in conversation.member_ids:
            raise Forbidden("not a member of this conversation", "not_member")
        return conversation, _members(conversation, guests)

    async def guest_count(self, conversation: ConversationRecord) -> int:
        return len((await self._profiles.guests_of([conversation.id]))[conversation.id])

    async def members(self, conversation: ConversationRecord) -> list[SubjectRef]:
        """Registered members, then the conversation's active anonymous participants."""
        guests = (await self._profiles.guests_of([conversation.id]))[conversation.id]
        return _members(conversation, guests)

    async def create_share_link(
        self, creator: Principal, conversation_id: str, expires_in_s: float | None
    ) -> ShareLinkRecord:
        _require_user(creator)
        conversation = await self.visible_to(creator, conversation_id)
        now = self._clock.now()
        expires_at = None if expires_in_s is None else from_epoch(now + expires_in_s)
        return await self._store.create_share_link(
            conversation_id=conversation.id,
            created_by=creator.subject.id,
            expires_at=expires_at,
            now=from_epoch(now),
        )

    async def conversations_of(self, subject: SubjectRef) -> list[ConversationRecord]:
        """A user's conversations, or the one a guest belongs to (from the worker's cache)."""
        return await self._profiles.conversations_of(subject)

    async def shared_with(
        self, viewer: Principal, conversations: Sequence[ConversationRecord] | None = None
    ) -> set[SubjectRef]:
        """Every subject that shares at least one conversation with the viewer (and itself),
        large conversations left out (their members are asked for, see :meth:`watchable`);
        ``conversations`` are the viewer's, when the caller has just read them."""
        if conversations is None:
            conversations = await self._profiles.conversations_of(viewer.subject)
        small = [c for c in conversations if not self.is_large(c)]
        shared = {viewer.subject}
        guests = await self._profiles.guests_of([c.id for c in small])
        for conversation in small:
            shared.update(_members(conversation, guests[conversation.id]))
        return shared

    async def watchable(self, viewer: Principal, ids: Sequence[str]) -> list[SubjectRef]:
        """Of these ids, in the order given (each once), the subjects the viewer may follow:
        those it shares a conversation with, large ones included (presence is not a public
        directory, whatever the size of the room)."""
        conversations = await self._profiles.conversations_of(viewer.subject)
        shared = {s.id: s for s in await self.shared_with(viewer, conversations)}
        wanted = [i for i in dict.fromkeys(ids) if i not in shared]
        for conversation in conversations:
            if not wanted:
                break
            if self.is_large(conversation):
                members = set(conversation.member_ids)
                for user_id in [i for i in wanted if i in members]:
                    shared[user_id] = SubjectRef(SubjectKind.USER, user_id)
                    wanted.remove(user_id)
        return [shared[i] for i in dict.fromkeys(ids) if i in shared]


def _members(conversation: ConversationRecord, guest_ids: Sequence[str]) -> list[SubjectRef]:
    users = [SubjectRef(SubjectKind.USER, uid) for uid in conversation.member_ids]
    return users + [SubjectRef(SubjectKind.ANONYMOUS, gid) for gid in guest_ids]


def _require_user(principal: Principal) -> None:
    if principal.subject.is_anonymous:
        raise Forbidden("only registered users can do this", "registered_user_required")
