"""``user:status`` to everyone who should hear it, exactly once per socket.

One emit goes to the list of rooms (every conversation of the subject, the personal rooms of its
co-members and its own): python-socketio delivers a multi-room emit once per socket, and the
Redis manager publishes it once, however many conversations are shared. Only when the subject is
invisible do its own sockets get a second, different message (their real status), and the first
one skips them. A large conversation's room is left out: it hears its online count instead
(:mod:`presence.rooms`), and whoever subscribed to the subject hears it in its watch room. When
the subject shares its exact last seen, the one emit carries two views
(:mod:`presence.realtime.delivery`): viewers who hide their own get it approximately.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import socketio

from presence.conversations import Conversations
from presence.domain import StatusChange, SubjectRef
from presence.metrics import Metrics
from presence.realtime.delivery import EXACT_VIEW, RESERVED_VIEW, VIEWS
from presence.rooms import LargeRooms
from presence.service import PresenceService
from presence.store.base import ConversationRecord

log = logging.getLogger(__name__)

USER_STATUS = "user:status"


def user_room(subject_id: str) -> str:
    return f"user:{subject_id}"


def conversation_room(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


WATCH_PREFIX = "watch:"


def watch_room(subject_id: str) -> str:
    """The sockets that subscribed to one subject (``presence:subscribe``)."""
    return f"{WATCH_PREFIX}{subject_id}"


@dataclass(kw_only=True, eq=False)
class Broadcaster:
    sio: socketio.AsyncServer
    conversations: Conversations
    presence: PresenceService
    rooms: LargeRooms
    metrics: Metrics

    def audience(self, subject: SubjectRef, conversations: list[ConversationRecord]) -> list[str]:
        """Everyone who hears the subject's transitions: its small conversations' rooms and
        members, whoever subscribed to it, and itself (a large room hears counts only)."""
        rooms: dict[str, None] = {}
        for conversation in conversations:
            if self.conversations.is_large(conversation):
                continue
            rooms[conversation_room(conversation.id)] = None
            for member_id in conversation.member_ids:
                rooms[user_room(member_id)] = None
        rooms[watch_room(subject.id)] = None
        rooms[user_room(subject.id)] = None
        return list(rooms)

    async def on_change(self, change: StatusChange) -> None:
        subject = change.public.subject
        own_room = user_room(subject.id)
        public = change.public.to_json()
        own = change.own.to_json()
        same_view = {k: v for k, v in own.items() if k != "manualStatus"} == public
        if change.public_changed:
            payload: dict[str, object] = public
            reserved = None if change.reserved is None else change.reserved.to_json()
            if reserved is not None and reserved != public:
                # Viewers who hide their own last seen get the subject's approximately.
                payload = {VIEWS: {EXACT_VIEW: public, RESERVED_VIEW: reserved}}
            conversations = await self.conversations.conversations_of(subject)
            rooms = self.audience(subject, conversations)
            await self.rooms.changed(change, conversations)
            if same_view:
                await self._emit(payload, rooms, skip=None)
                return
            await self._emit(payload, rooms, skip=await self.presence.sids(subject))
        await self._emit(own, [own_room], skip=None)

    async def _emit(
        self, payload: dict[str, object], rooms: list[str], skip: list[str] | None
    ) -> None:
        await self.sio.emit(USER_STATUS, payload, to=rooms, skip_sid=skip or None)
        self.metrics.broadcasts.inc()
