"""Directory changes on live sockets, on every worker (SPEC §12 directory sync).

The worker that stored a change tells every worker (:meth:`ProbedQueue.tell_workers`, one
message per :data:`CHUNK` members); each applies it to its own sockets, found in their users'
personal rooms: an added member's sockets enter the conversation's room and get its
``presence:state`` (unless the conversation is large: its room hears counts,
:mod:`presence.rooms`), a removed member's sockets leave the room (they hear nothing more
of it), and a deactivated user's sockets are closed after its verified credentials are
forgotten on that worker. A user's new last-seen privacy reaches its sockets the same way:
what they see of others follows it (reciprocity).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from presence.auth.authenticator import Authenticator
from presence.conversations import Conversations
from presence.directory import MembershipChange
from presence.domain import LastSeenPrivacy, SubjectKind, SubjectRef
from presence.realtime.broadcast import conversation_room, user_room
from presence.realtime.protocol import BoundedServer
from presence.realtime.queue import ProbedQueue
from presence.service import PresenceService

log = logging.getLogger(__name__)

CHUNK = 1000
NAMESPACE = "/"


class LiveDirectory:
    def __init__(
        self,
        sio: BoundedServer,
        queue: ProbedQueue | None,
        authenticator: Authenticator,
        conversations: Conversations,
        presence: PresenceService,
        set_reserved: Callable[[str, bool], None],
    ) -> None:
        self._sio = sio
        self._set_reserved = set_reserved
        self._queue = queue
        self._authenticator = authenticator
        self._conversations = conversations
        self._presence = presence
        if queue is not None:
            queue.on_directory = self.apply

    async def _tell(self, payload: dict[str, Any]) -> None:
        if self._queue is None:  # one worker (embedded mode)
            await self.apply(payload)
        else:
            await self._queue.tell_workers(payload)

    # -- the directory's listener (on the worker that stored the change) --------------------------

    async def on_membership(self, change: MembershipChange) -> None:
        for start in range(0, max(len(change.added), len(change.removed)), CHUNK):
            await self._tell(
                {
                    "kind": "members",
                    "conversationId": change.conversation_id,
                    "added": list(change.added[start : start + CHUNK]),
                    "removed": list(change.removed[start : start + CHUNK]),
                }
            )

    async def on_deactivated(self, user_id: str) -> None:
        await self._tell({"kind": "deactivated", "userId": user_id})

    async def on_privacy(self, user_id: str, privacy: LastSeenPrivacy) -> None:
        await self._tell({"kind": "privacy", "userId": user_id, "lastSeen": privacy.value})

    # -- on every worker ------------------------------------------------------------------------

    def _local_sids(self, user_id: str) -> list[str]:
        manager = self._sio.manager
        return [sid for sid, _ in manager.get_participants(NAMESPACE, user_room(user_id))]

    async def apply(self, payload: dict[str, Any]) -> None:
        if payload.get("kind") == "deactivated":
            user_id = str(payload["userId"])
            self._authenticator.cache.forget(SubjectRef(SubjectKind.USER, user_id))
            for sid in self._local_sids(user_id):
                await self._sio.error(sid, "inactive_user", "account is deactivated")
                await self._sio.disconnect(sid)
            return
        if payload.get("kind") == "privacy":
            # What the user's sockets see of others' last seen follows its own choice.
            reserved = payload["lastSeen"] != LastSeenPrivacy.EXACT.value
            for sid in self._local_sids(str(payload["userId"])):
                self._set_reserved(sid, reserved)
            return
        room = conversation_room(str(payload["conversationId"]))
        for user_id in payload.get("removed", []):
            for sid in self._local_sids(str(user_id)):
                await self._sio.leave_room(sid, room)
        added = {str(u): self._local_sids(str(u)) for u in payload.get("added", [])}
        added = {u: sids for u, sids in added.items() if sids}
        if added:
            await self._greet(str(payload["conversationId"]), room, added)

    async def _greet(self, conversation_id: str, room: str, added: dict[str, list[str]]) -> None:
        for sids in added.values():
            for sid in sids:
                await self._sio.enter_room(sid, room)
        conversation = await self._conversations.record(conversation_id)
        if conversation is None or self._conversations.is_large(conversation):
            # A large room is never listed whole: its sockets hear its count as it changes.
            return
        members = await self._conversations.members(conversation)
        for user_id, sids in added.items():
            viewer = SubjectRef(SubjectKind.USER, user_id)
            records = await self._presence.records(members, viewer=viewer)
            state = {"conversationId": conversation_id, "users": [r.to_json() for r in records]}
            for sid in sids:
                await self._sio.reply(sid, "presence:state", state)
