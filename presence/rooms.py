"""Large conversations (SPEC §11): above ``PRESENCE_ROOM_FANOUT_LIMIT`` members a transition is
not pushed to the whole room. The room hears its online count instead, at most once a second
while it changes, and each socket hears ``user:status`` of the subjects it subscribed to.

The count is kept incrementally, never by scanning the members at each transition: Redis holds
the set of the members others see online (``{room:<id>}:online``, member order, so it also
serves the online first pages of the room's presence), changed by one script at every
transition of a member, by the worker that decided it. A room nobody counted yet (or whose set
expired, :data:`COUNT_TTL_S`, which bounds any drift) is counted from the live states once, in
batches, by whichever worker needs it first. A changed room is marked; every worker looks every
:data:`TELL_POLL_S` and the one that wins the room's one-second window sends its count.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from presence import policy
from presence.clock import Clock
from presence.conversations import Conversations
from presence.domain import InvalidInput, PresenceRecord, Status, StatusChange, SubjectRef
from presence.keys import ROOM_SENTINEL, Keys, decoded
from presence.lua import RELEASE_IF_HELD, ROOM_COUNTED, ROOM_MEMBER
from presence.service import PresenceService
from presence.store.base import ConversationRecord

# How often every worker looks for rooms whose count changed.
TELL_POLL_S = 0.25
# At most one count per room per this long, cluster-wide.
TELL_EVERY_MS = 1000
# A room's online set is counted again from the live states this often (bounds any drift: a
# transition decided while the room was being counted, a worker that died mid-change).
COUNT_TTL_S = 600.0
# Members whose live state one step of a count reads.
COUNT_BATCH = 5000
# A count a worker left unfinished (it died) is dropped, and another worker counts, after this.
COUNTING_TTL_MS = 60_000
# How often a worker waiting for another's count looks whether it is there.
COUNT_WAIT_S = 0.1
MAX_PAGE = 200
DEFAULT_PAGE = 50


@dataclass(frozen=True, slots=True)
class RoomCount:
    conversation_id: str
    online: int
    total: int

    def to_json(self) -> dict[str, object]:
        return {"conversationId": self.conversation_id, "online": self.online, "total": self.total}


@dataclass(frozen=True, slots=True)
class Page:
    records: list[PresenceRecord]
    next: str | None  # the cursor of the next page (None: this was the last)


class LargeRooms:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        clock: Clock,
        presence: PresenceService,
        conversations: Conversations,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._presence = presence
        self._conversations = conversations
        self._member = redis.register_script(ROOM_MEMBER)
        self._counted = redis.register_script(ROOM_COUNTED)
        self._release = redis.register_script(RELEASE_IF_HELD)

    def is_large(self, conversation: ConversationRecord) -> bool:
        return self._conversations.is_large(conversation)

    # -- at every transition (on the worker that decided it) -----------------------------------

    async def changed(
        self, change: StatusChange, conversations: Sequence[ConversationRecord]
    ) -> None:
        """A member of these conversations changed: the large ones' counts follow (only a
        change between offline and not is a change of the count)."""
        large = [c for c in conversations if self.is_large(c)]
        if not large or change.before is None:
            return
        was = change.before is not Status.OFFLINE
        now = change.public.status is not Status.OFFLINE
        if was == now:
            return
        member = change.public.subject.member
        for conversation in large:
            key = self._keys.room_online(conversation.id)
            await self._member(keys=[key], args=[member, int(now)])
            # Marked even when nobody counted the room yet: its sockets then get its first
            # count (the worker that sends it counts it).
            await self._redis.sadd(self._keys.rooms_changed, conversation.id)

    # -- counts ---------------------------------------------------------------------------------

    async def count(self, conversation: ConversationRecord) -> RoomCount:
        """Its online count and its members (guests included), without listing them."""
        key = await self._counted_set(conversation)
        online = int(await self._redis.zcard(key)) - 1  # the sentinel
        total = len(conversation.member_ids) + await self._conversations.guest_count(conversation)
        return RoomCount(conversation.id, max(0, online), total)

    async def due(self) -> list[str]:
        """The changed rooms whose count this worker sends now (each room to one worker, at
        most once a second)."""
        changed = [decoded(c) for c in await self._redis.smembers(self._keys.rooms_changed)]
        won = []
        for conversation_id in changed:
            told = self._keys.room_told(conversation_id)
            if await self._redis.set(told, "1", nx=True, px=TELL_EVERY_MS):
                await self._redis.srem(self._keys.rooms_changed, conversation_id)
                won.append(conversation_id)
        return won

    async def _counted_set(self, conversation: ConversationRecord) -> str:
        """The room's online set, counted from the live states first if nobody has."""
        key = self._keys.room_online(conversation.id)
        if await self._redis.exists(key):
            return key
        # One worker counts a room at a time; the others wait for its count (a 100 000-member
        # room takes seconds), and count it themselves only if that worker never finishes.
        token = uuid.uuid4().hex
        lock = self._keys.room_count_lock(conversation.id)
        if not await self._redis.set(lock, token, nx=True, px=COUNTING_TTL_MS):
            for _ in range(int(COUNTING_TTL_MS / 1000 / COUNT_WAIT_S)):
                await asyncio.sleep(COUNT_WAIT_S)
                if await self._redis.exists(key):
                    return key
        try:
            await self._count_into(conversation, key, token)
        finally:
            await self._release(keys=[lock], args=[token])
        return key

    async def _count_into(self, conversation: ConversationRecord, key: str, token: str) -> None:
        members = await self._conversations.members(conversation)
        counting = self._keys.room_counting(conversation.id, token)
        await self._redis.zadd(counting, {ROOM_SENTINEL: 0})
        await self._redis.pexpire(counting, COUNTING_TTL_MS)  # a worker may die counting
        for start in range(0, len(members), COUNT_BATCH):
            online = await self._online(members[start : start + COUNT_BATCH])
            if online:
                await self._redis.zadd(counting, dict.fromkeys(online, 0))
        await self._counted(keys=[key, counting], args=[int(COUNT_TTL_S * 1000)])

    async def _online(self, members: Sequence[SubjectRef]) -> list[str]:
        """Of these members, the ones others see online: the live states first (Redis only),
        then the stored choice of those that are (an invisible one is not)."""
        states = await self._presence.connections.live_states(members)
        now = self._clock.now()
        threshold = self._presence.settings.offline_threshold_s
        live = [
            m for m, s in zip(members, states, strict=True) if policy.is_online(s, now, threshold)
        ]
        records = await self._presence.records(live)
        return [r.subject.member for r in records if r.status is not Status.OFFLINE]

    # -- pages ----------------------------------------------------------------------------------

    async def page(
        self,
        conversation: ConversationRecord,
        members: Sequence[SubjectRef],
        viewer: SubjectRef,
        cursor: str | None,
        limit: int,
    ) -> Page:
        """Members online first, then the others, each part in member order; ``cursor`` is
        where the previous page ended."""
        phase, after = decode_cursor(cursor)
        key = await self._counted_set(conversation)
        chosen: list[str] = []
        if phase == _ONLINE:
            start = "(" + after if after else "-"
            found = await self._redis.zrangebylex(key, start, "+", start=0, num=limit + 1)
            chosen = [m for m in (decoded(f) for f in found) if m != ROOM_SENTINEL][:limit]
            if len(chosen) < limit:
                phase, after = _OFFLINE, ""
        if phase == _OFFLINE and len(chosen) < limit:
            ordered = sorted(m.member for m in members)
            begin = _after(ordered, after)
            while begin < len(ordered) and len(chosen) < limit:
                batch = ordered[begin : begin + limit * 2]
                scores = await self._redis.zmscore(key, batch)
                chosen += [m for m, s in zip(batch, scores, strict=True) if s is None]
                begin += len(batch)
            chosen = chosen[:limit]
        subjects = [SubjectRef.from_member(m) for m in chosen]
        records = await self._presence.records(subjects, viewer=viewer)
        last = chosen[-1] if chosen else None
        next_cursor = None
        if last is not None and len(chosen) == limit:
            ends_online = phase == _ONLINE
            next_cursor = encode_cursor(_ONLINE if ends_online else _OFFLINE, last)
        return Page(records, next_cursor)


_ONLINE, _OFFLINE = "on", "off"


def page_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1 to {MAX_PAGE}", "invalid_limit")
    return int(raw)


def encode_cursor(phase: str, member: str) -> str:
    return base64.urlsafe_b64encode(f"{phase}|{member}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[str, str]:
    """(phase, the last member of the previous page); a cursor this code did not write is a
    400, never a stack trace."""
    if cursor is None:
        return _ONLINE, ""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("cursor is not valid", "invalid_cursor") from None
    phase, _, member = raw.partition("|")
    if phase not in (_ONLINE, _OFFLINE) or not member:
        raise InvalidInput("cursor is not valid", "invalid_cursor")
    return phase, member


def _after(ordered: Sequence[str], member: str) -> int:
    """The index of the first member after ``member`` in sorted ``ordered``."""
    return bisect.bisect_right(ordered, member) if member else 0
