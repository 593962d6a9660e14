"""The events an authenticated socket may send, each a small function of its payload,
which arrives already validated by its model (:data:`presence.contract.events.INBOUND`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from presence.choices import Choices
from presence.clock import Clock
from presence.contract.events import (
    INBOUND,
    MAX_SUBSCRIBED,
    Activity,
    ConversationJoin,
    Heartbeat,
    PresenceSet,
    Subscribe,
    Unsubscribe,
)
from presence.conversations import Conversations
from presence.domain import InvalidInput, Principal, from_epoch, iso
from presence.realtime import payloads
from presence.realtime.broadcast import WATCH_PREFIX, conversation_room, watch_room
from presence.realtime.protocol import BoundedServer
from presence.rooms import LargeRooms
from presence.service import PresenceService

EventHandler = Callable[[str, Principal, Any], Awaitable[None]]


@dataclass(kw_only=True, eq=False)
class EventHandlers:
    sio: BoundedServer
    clock: Clock
    conversations: Conversations
    presence: PresenceService
    choices: Choices
    rooms: LargeRooms

    def __post_init__(self) -> None:
        self.table: dict[str, EventHandler] = {
            "presence:set": self.presence_set,
            "conversation:join": self.conversation_join,
            "heartbeat": self.heartbeat,
            "activity": self.activity,
            "presence:subscribe": self.subscribe,
            "presence:unsubscribe": self.unsubscribe,
        }
        # ``authenticate`` is admission's; every other event of the contract is handled here.
        if {"authenticate", *self.table} != set(INBOUND):
            raise RuntimeError("the event handlers and the contract's events differ")

    async def handle(self, event: str, sid: str, principal: Principal, args: Any) -> None:
        payload = payloads.event_payload(INBOUND[event], args)
        await self.table[event](sid, principal, payload)

    async def presence_set(self, sid: str, principal: Principal, payload: PresenceSet) -> None:
        if (rest := self.choices.user_activity(principal.subject)) is not None:
            await rest
        await self.choices.set_status(
            principal.subject, payload.status, payload.text, payload.until
        )

    async def conversation_join(
        self, sid: str, principal: Principal, payload: ConversationJoin
    ) -> None:
        if (rest := self.choices.user_activity(principal.subject)) is not None:
            await rest
        conversation = await self.conversations.visible_to(principal, payload.conversation_id)
        await self.sio.enter_room(sid, conversation_room(conversation.id))
        if self.rooms.is_large(conversation):
            # Too many to list: its count now (and whenever it changes); its members' presence
            # by page (REST) or by subscription.
            count = await self.rooms.count(conversation)
            await self.sio.reply(sid, "presence:count", count.to_json())
            return
        members = await self.conversations.members(conversation)
        records = await self.presence.records(members, viewer=principal.subject)
        await self.sio.reply(
            sid,
            "presence:state",
            {"conversationId": conversation.id, "users": [r.to_json() for r in records]},
        )

    async def activity(self, sid: str, principal: Principal, payload: Activity) -> None:
        """The person is there (typing, clicking): user activity, through the same throttle
        as any other; no reply."""
        if (rest := self.choices.user_activity(principal.subject)) is not None:
            await rest

    async def subscribe(self, sid: str, principal: Principal, payload: Subscribe) -> None:
        if len(payload.ids) > MAX_SUBSCRIBED:
            raise InvalidInput(f"at most {MAX_SUBSCRIBED} ids per socket", "too_many_ids")
        subjects = await self.conversations.watchable(principal, payload.ids)
        await self._watch(sid, {watch_room(s.id) for s in subjects})
        records = await self.presence.records(subjects, viewer=principal.subject)
        await self.sio.reply(sid, "presence:subscribed", {"users": [r.to_json() for r in records]})

    async def unsubscribe(self, sid: str, principal: Principal, payload: Unsubscribe) -> None:
        await self._watch(sid, set())
        await self.sio.reply(sid, "presence:subscribed", {"users": []})

    async def _watch(self, sid: str, wanted: set[str]) -> None:
        """The socket's watch rooms become exactly ``wanted``."""
        current = {r for r in self.sio.rooms(sid) if r.startswith(WATCH_PREFIX)}
        for room in current - wanted:
            await self.sio.leave_room(sid, room)
        for room in wanted - current:
            await self.sio.enter_room(sid, room)

    async def heartbeat(self, sid: str, principal: Principal, payload: Heartbeat) -> None:
        """The client is there: keeps the subject connected, never user activity (an open tab
        nobody looks at goes away)."""
        await self.presence.activity(principal.subject)
        await self.sio.reply(
            sid, "heartbeat:ack", {"serverTime": iso(from_epoch(self.clock.now()))}
        )
