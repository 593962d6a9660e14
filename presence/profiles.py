"""What an announcement or a presence read needs of a subject besides its live state: its name,
manual status and conversations (and a conversation's guests), cached per worker so a
transition or a new connection's snapshot waits on no database read.

Coherence comes from Redis, not from messages that might arrive late: every change of cached
data (a manual status, a new conversation) raises the subject's **generation** in Redis
(``<bucket>gen``), and a reader checks its copy against the generation it reads in the same
round trip as the live state (:meth:`presence.registry.ConnectionRegistry.live_states`). A copy
of another generation, older than ``PRESENCE_PROFILE_CACHE_TTL_S`` (a backstop for a change
made behind the service's back) or evicted (at most ``PRESENCE_PROFILE_CACHE_SIZE`` subjects,
least recently used first) is read again: at most one database read per cold subject.

The stored ``lastActiveAt``, ``lastSeen`` and online flag in a copy are only fallbacks: readers
take them from Redis, which is where they change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence.clock import Clock
from presence.domain import SubjectRef
from presence.keys import Keys
from presence.metrics import Metrics
from presence.store.base import (
    ConversationRecord,
    ManualChoice,
    Store,
    StoredPresence,
    StoreError,
)

log = logging.getLogger(__name__)

K = TypeVar("K")


def conversation_member(conversation_id: str) -> str:
    """The name a conversation's generation goes by (its guests change with it)."""
    return f"conversation:{conversation_id}"


@dataclass(slots=True)
class _Copy:
    """What this worker holds of one subject (or one conversation's guests), read at
    ``generation``; each part is None until it was read."""

    generation: int
    loaded_at: float  # monotonic
    stored: StoredPresence | None = None
    # A subject's conversations by id: their records (members change) come from the
    # conversations' own copies, each checked against the conversation's generation.
    conversations: tuple[str, ...] | None = None
    guests: tuple[str, ...] | None = None
    conversation: ConversationRecord | None = None  # a conversation's own record


class _Copies(Generic[K]):
    """Copies by key, least recently used first out, each trusted only at its generation
    and within the TTL."""

    def __init__(self, clock: Clock, capacity: int, ttl_s: float) -> None:
        self._clock = clock
        self._capacity = capacity
        self._ttl_s = ttl_s
        self._copies: OrderedDict[K, _Copy] = OrderedDict()

    def fresh(self, key: K, generation: int | None) -> _Copy | None:
        """The copy of ``key`` if it is of ``generation`` and fresh (None: Redis did not say
        which generation is current, so no copy is)."""
        copy = self._copies.get(key)
        if copy is None or generation is None:
            return None
        if copy.generation != generation or (
            self._clock.monotonic() - copy.loaded_at > self._ttl_s
        ):
            del self._copies[key]
            return None
        self._copies.move_to_end(key)
        return copy

    def keep(self, key: K, generation: int | None) -> _Copy | None:
        """The copy to fill for ``key`` at ``generation`` (None when nothing may be kept)."""
        if generation is None or not self._capacity:
            return None
        copy = self._copies.get(key)
        if copy is None or copy.generation != generation:
            copy = _Copy(generation, self._clock.monotonic())
            self._copies[key] = copy
        self._copies.move_to_end(key)
        while len(self._copies) > self._capacity:
            self._copies.popitem(last=False)
        return copy

    def peek(self, key: K) -> _Copy | None:
        """The copy of ``key`` whatever its generation (to know what else to check with it)."""
        return self._copies.get(key)

    def pop(self, key: K) -> _Copy | None:
        return self._copies.pop(key, None)

    def clear(self) -> None:
        self._copies.clear()

    def __len__(self) -> int:
        return len(self._copies)


class Profiles:
    def __init__(
        self,
        store: Store,
        redis: Redis,
        keys: Keys,
        clock: Clock,
        metrics: Metrics,
        *,
        capacity: int,
        ttl_s: float,
    ) -> None:
        self._store = store
        self._redis = redis
        self._keys = keys
        self._metrics = metrics
        self._copies: _Copies[SubjectRef] = _Copies(clock, capacity, ttl_s)
        # By conversation id: its record and its active guests.
        self._guests: _Copies[str] = _Copies(clock, capacity, ttl_s)
        # Reads of cold copies in progress, by (subject, generation): joined, not repeated.
        self._reading: dict[tuple[SubjectRef, int], asyncio.Future[StoredPresence | None]] = {}

    def _keep(self, subject: SubjectRef, generation: int | None) -> _Copy | None:
        copy = self._copies.keep(subject, generation)
        self._metrics.profile_cache_size.set(len(self._copies))
        return copy

    async def stored(
        self, subjects: Sequence[SubjectRef], generations: Mapping[SubjectRef, int]
    ) -> dict[SubjectRef, StoredPresence]:
        """What the database has of the subjects that exist, from the cache where it holds
        their current generation; the others in one read. A subject another caller is
        reading right now (same generation) is waited for, not read again: a storm of
        connections into one group reads each cold member once."""
        found: dict[SubjectRef, StoredPresence] = {}
        cold: list[SubjectRef] = []
        shared: list[tuple[SubjectRef, asyncio.Future[StoredPresence | None]]] = []
        for subject in subjects:
            generation = generations[subject]
            copy = self._copies.fresh(subject, generation)
            if copy is not None and copy.stored is not None:
                found[subject] = copy.stored
            elif (reading := self._reading.get((subject, generation))) is not None:
                shared.append((subject, reading))
            else:
                cold.append(subject)
        self._metrics.profile_cache.labels(result="hit").inc(len(found) + len(shared))
        if cold:
            self._metrics.profile_cache.labels(result="miss").inc(len(cold))
            found.update(await self._read_stored(cold, generations))
        retry: list[SubjectRef] = []
        for subject, reading in shared:
            try:
                value = await asyncio.shield(reading)
            except StoreError:
                retry.append(subject)  # that read failed: this caller asks itself
                continue
            if value is not None:
                found[subject] = value
        if retry:
            found.update(await self._store.get_presence(retry))
        return found

    async def _read_stored(
        self, cold: list[SubjectRef], generations: Mapping[SubjectRef, int]
    ) -> dict[SubjectRef, StoredPresence]:
        loop = asyncio.get_running_loop()
        reading = {(s, generations[s]): loop.create_future() for s in cold}
        self._reading.update(reading)
        try:
            read = await self._store.get_presence(cold)
        except BaseException as exc:
            for key, future in reading.items():
                self._reading.pop(key, None)
                future.set_exception(exc if isinstance(exc, StoreError) else StoreError("gone"))
                future.exception()  # retrieved: nobody waiting must not warn
            raise
        for (subject, generation), future in reading.items():
            self._reading.pop((subject, generation), None)
            stored = read.get(subject)
            future.set_result(stored)
            if stored is not None and (copy := self._keep(subject, generation)) is not None:
                copy.stored = stored
        return read

    async def conversations_of(self, subject: SubjectRef) -> list[ConversationRecord]:
        """A user's conversations, or the one a guest belongs to: which ones from the
        subject's copy, their records from the conversations' copies, all checked in one Redis
        round trip (the generations of the subject and of the conversations its copy names);
        the database only for cold copies."""
        held = self._copies.peek(subject)
        named = () if held is None or held.conversations is None else held.conversations
        generations = await self._generations(
            [subject.member, *(conversation_member(c) for c in named)]
        )
        generation = generations[0]
        copy = self._copies.fresh(subject, generation)
        if copy is not None and copy.conversations is not None and copy.conversations == named:
            self._metrics.profile_cache.labels(result="hit").inc()
            return await self._records(named, generations[1:])
        self._metrics.profile_cache.labels(result="miss").inc()
        conversations = await self._read_conversations(subject)
        if (copy := self._keep(subject, generation)) is not None:
            copy.conversations = tuple(c.id for c in conversations)
        return conversations

    async def conversations(self, conversation_ids: Sequence[str]) -> list[ConversationRecord]:
        """The records of these conversations that exist, in order, each from its copy while
        the copy holds the conversation's current generation (read before any database read,
        so a change made meanwhile makes the copy cold, never a stale copy look fresh); the
        cold ones in one database read."""
        ids = list(conversation_ids)
        if not ids:
            return []
        return await self._records(
            ids, await self._generations([conversation_member(c) for c in ids])
        )

    async def _records(
        self, ids: Sequence[str], generations: Sequence[int | None]
    ) -> list[ConversationRecord]:
        known: dict[str, ConversationRecord] = {}
        cold: dict[str, int | None] = {}
        for conversation_id, generation in zip(ids, generations, strict=True):
            copy = self._guests.fresh(conversation_id, generation)
            if copy is not None and copy.conversation is not None:
                known[conversation_id] = copy.conversation
            else:
                cold[conversation_id] = generation
        if cold:
            for record in await self._store.get_conversations(list(cold)):
                known[record.id] = record
                if (copy := self._guests.keep(record.id, cold[record.id])) is not None:
                    copy.conversation = record
        return [known[c] for c in ids if c in known]

    async def _read_conversations(self, subject: SubjectRef) -> list[ConversationRecord]:
        if not subject.is_anonymous:
            # Which ones from the memberships; their records through their own copies (the
            # other members of a conversation have usually made it warm already).
            found = await self.conversations(await self._store.conversation_ids_of(subject.id))
            return sorted(found, key=lambda c: (c.created_at, c.id))
        participant = await self._store.get_participant(subject.id)
        if participant is None:
            return []
        return await self.conversations([participant.conversation_id])

    async def conversation(
        self, conversation_id: str
    ) -> tuple[ConversationRecord | None, tuple[str, ...]]:
        """A conversation's record and the ids of its active guests (one Redis round trip for
        its generation; the database only when the copy is cold). A conversation that does
        not exist is not remembered."""
        (generation,) = await self._generations([conversation_member(conversation_id)])
        copy = self._guests.fresh(conversation_id, generation)
        if copy is not None and copy.conversation is not None and copy.guests is not None:
            self._metrics.profile_cache.labels(result="hit").inc()
            return copy.conversation, copy.guests
        self._metrics.profile_cache.labels(result="miss").inc()
        conversation = await self._store.get_conversation(conversation_id)
        if conversation is None:
            return None, ()
        guests = tuple(p.id for p in await self._store.list_participants(conversation_id))
        if (copy := self._guests.keep(conversation_id, generation)) is not None:
            copy.conversation, copy.guests = conversation, guests
        return conversation, guests

    async def guests_of(self, conversation_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The ids of each conversation's active guests (one Redis round trip for the
        generations; the database only for the conversations whose copy is cold)."""
        ids = list(dict.fromkeys(conversation_ids))
        generations = await self._generations([conversation_member(c) for c in ids])
        found: dict[str, tuple[str, ...]] = {}
        for conversation_id, generation in zip(ids, generations, strict=True):
            copy = self._guests.fresh(conversation_id, generation)
            if copy is not None and copy.guests is not None:
                found[conversation_id] = copy.guests
                continue
            guests = tuple(p.id for p in await self._store.list_participants(conversation_id))
            found[conversation_id] = guests
            if (copy := self._guests.keep(conversation_id, generation)) is not None:
                copy.guests = guests
        return found

    async def _generations(self, members: Sequence[str]) -> list[int | None]:
        """Each member's generation; None for all of them while Redis does not answer (then
        nothing is cached or trusted: the database answers, as it does for every read)."""
        pipe = self._redis.pipeline(transaction=False)
        for member in members:
            pipe.hget(self._keys.bucket(member).generations, member)
        try:
            replies = await pipe.execute()
        except RedisError:
            self._metrics.redis_errors.labels(operation="profile_generation").inc()
            return [None] * len(members)
        return [0 if raw is None else int(raw) for raw in replies]

    async def guests_changed(self, conversation_id: str) -> None:
        """A guest joined or left the conversation (every worker reads its guests again)."""
        self._guests.pop(conversation_id)
        await self._raise([conversation_member(conversation_id)])

    async def changed(self, subjects: Sequence[SubjectRef]) -> None:
        """What is cached of these subjects changed (in the database, just now): every worker's
        copy is out of date from this moment on."""
        for subject in subjects:
            self._copies.pop(subject)
        await self._raise([s.member for s in subjects])

    async def status_changed(self, subject: SubjectRef, choice: ManualChoice) -> None:
        """This worker just stored the subject's manual status: every other copy is out of
        date, and this worker's own becomes the new one (the announcement that follows reads
        no database), unless someone else changed the subject since it was read."""
        copy = self._copies.pop(subject)
        generations = await self._raise([subject.member])
        if copy is None or copy.stored is None or generations != [copy.generation + 1]:
            return
        kept = self._keep(subject, generations[0])
        if kept is not None:
            kept.stored = dataclasses.replace(
                copy.stored,
                manual_status=choice.status,
                status_text=choice.text,
                status_until=choice.until,
            )
            kept.conversations = copy.conversations  # a status changes no membership

    async def _raise(self, members: Sequence[str]) -> list[int] | None:
        """Raise the generations; returns them (None when Redis does not answer)."""
        pipe = self._redis.pipeline(transaction=False)
        for member in members:
            pipe.hincrby(self._keys.bucket(member).generations, member, 1)
        try:
            return [int(g) for g in await pipe.execute()]
        except RedisError:
            # The change is stored; other workers' copies catch up within the cache's TTL.
            self._metrics.redis_errors.labels(operation="profile_generation").inc()
            log.warning("could not raise the generation of changed profiles")
            return None

    def clear(self) -> None:
        """Redis forgot the generations (a restart, a flush): no copy can be trusted."""
        self._copies.clear()
        self._guests.clear()
        self._metrics.profile_cache_size.set(0)
