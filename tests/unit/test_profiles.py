"""The per-worker cache of what announcements read of a subject: a copy is used only while
Redis holds its generation, within its TTL and its capacity; a change on one worker makes every
other worker's copy cold at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import fakeredis
import pytest

from presence.accounts import Accounts
from presence.auth.passwords import Passwords
from presence.auth.tokens import JwtCodec
from presence.conversations import Conversations
from presence.domain import ManualStatus, Principal, Role, SubjectKind, SubjectRef, from_epoch
from presence.keys import Keys
from presence.metrics import Metrics
from presence.profiles import Profiles
from presence.store.base import (
    ConversationRecord,
    ManualChoice,
    ParticipantRecord,
    StoredPresence,
    StoreError,
)
from presence.store.memory import MemoryStore
from tests.support.fakes import FakeClock

T0 = from_epoch(1_800_000_000.0)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.presence_reads = 0
        self.conversation_reads = 0
        self.participant_reads = 0
        self.conversation_gets = 0

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        self.conversation_gets += 1
        return await super().get_conversation(conversation_id)

    async def get_presence(
        self, subjects: Sequence[SubjectRef]
    ) -> dict[SubjectRef, StoredPresence]:
        self.presence_reads += 1
        return await super().get_presence(subjects)

    async def list_participants(self, conversation_id: str) -> list[ParticipantRecord]:
        self.participant_reads += 1
        return await super().list_participants(conversation_id)

    async def get_conversations(self, conversation_ids: Sequence[str]) -> list[ConversationRecord]:
        self.conversation_gets += 1
        return await super().get_conversations(conversation_ids)

    async def conversation_ids_of(self, user_id: str) -> list[str]:
        # Which conversations a user is in: the read a cold copy of a user's needs.
        self.conversation_reads += 1
        return await super().conversation_ids_of(user_id)


class Worker:
    """One worker's cache over the shared Redis and database."""

    def __init__(
        self,
        store: CountingStore,
        redis: fakeredis.FakeAsyncRedis,
        clock: FakeClock,
        capacity: int = 100,
    ) -> None:
        self.metrics = Metrics("w")
        self.keys = Keys("t:", 4)
        self.profiles = Profiles(
            store, redis, self.keys, clock, self.metrics, capacity=capacity, ttl_s=60
        )

    async def stored(self, *subjects: SubjectRef) -> dict[SubjectRef, StoredPresence]:
        generations = {}
        for s in subjects:
            raw = await self.profiles._redis.hget(self.keys.bucket(s.member).generations, s.member)
            generations[s] = 0 if raw is None else int(raw)
        return await self.profiles.stored(list(subjects), generations)


async def _user(store: MemoryStore, name: str) -> SubjectRef:
    user = await store.create_user(
        username=name, email=f"{name}@example.test", password_hash="x", role=Role.USER, now=T0
    )
    return SubjectRef(SubjectKind.USER, user.id)


async def test_a_warm_copy_costs_no_database_read() -> None:
    store, redis, clock = CountingStore(), fakeredis.FakeAsyncRedis(), FakeClock()
    a, b = await _user(store, "ann"), await _user(store, "bob")
    w = Worker(store, redis, clock)
    first = await w.stored(a, b)
    assert store.presence_reads == 1  # both cold subjects in one read
    assert await w.stored(a, b) == first
    assert await w.stored(a) == {a: first[a]}
    assert store.presence_reads == 1
    assert w.metrics.profile_cache.labels(result="hit")._value.get() == 3
    missing = SubjectRef(SubjectKind.USER, "missing")
    assert await w.stored(missing) == {}


async def test_a_change_on_one_worker_makes_every_copy_cold() -> None:
    store, redis, clock = CountingStore(), fakeredis.FakeAsyncRedis(), FakeClock()
    a = await _user(store, "ann")
    one, two = Worker(store, redis, clock), Worker(store, redis, clock)
    assert (await two.stored(a))[a].manual_status is ManualStatus.ONLINE
    await store.set_manual_status(a, ManualChoice(ManualStatus.DND))
    await one.profiles.changed([a])
    assert (await two.stored(a))[a].manual_status is ManualStatus.DND
    assert store.presence_reads == 2


async def test_copies_expire_after_their_ttl_and_the_oldest_used_goes_first() -> None:
    store, redis, clock = CountingStore(), fakeredis.FakeAsyncRedis(), FakeClock()
    a, b, c = [await _user(store, n) for n in ("ann", "bob", "cy")]
    w = Worker(store, redis, clock, capacity=2)
    await w.stored(a)
    await w.stored(b)
    await w.stored(a)  # a used last: b is the one to go
    await w.stored(c)
    reads = store.presence_reads
    await w.stored(a)
    assert store.presence_reads == reads
    await w.stored(b)
    assert store.presence_reads == reads + 1
    clock.advance(61)
    await w.stored(b)
    assert store.presence_reads == reads + 2
    w.profiles.clear()
    await w.stored(b)
    assert store.presence_reads == reads + 3


async def test_a_capacity_of_zero_caches_nothing() -> None:
    store, redis, clock = CountingStore(), fakeredis.FakeAsyncRedis(), FakeClock()
    a = await _user(store, "ann")
    w = Worker(store, redis, clock, capacity=0)
    await w.stored(a)
    await w.stored(a)
    assert store.presence_reads == 2


async def test_a_new_conversation_reaches_every_workers_copy_of_its_members() -> None:
    store, redis, clock = CountingStore(), fakeredis.FakeAsyncRedis(), FakeClock()
    a, b = await _user(store, "ann"), await _user(store, "bob")
    one, two = Worker(store, redis, clock), Worker(store, redis, clock)
    assert await two.profiles.conversations_of(b) == []
    assert await two.profiles.conversations_of(b) == []
    assert store.conversation_reads == 1
    conversations = Conversations(store, clock, one.profiles)
    created = await conversations.create(Principal(subject=a, name="ann"), "t", [b.id])
    assert [c.id for c in await two.profiles.conversations_of(b)] == [created.id]
    assert [c.id for c in await two.profiles.conversations_of(a)] == [created.id]
    assert store.conversation_reads == 3


async def test_a_guests_conversation_is_the_one_it_joined() -> None:
    store, redis, clock = CountingStore(), fakeredis.FakeAsyncRedis(), FakeClock()
    a = await _user(store, "ann")
    conv = await store.create_conversation(title="t", member_ids=[a.id], created_by=a.id, now=T0)
    link = await store.create_share_link(
        conversation_id=conv.id, created_by=a.id, expires_at=None, now=T0
    )
    guest = await store.create_participant(
        conversation_id=conv.id, link_id=link.id, nickname="g", token_hash="h", now=T0
    )
    w = Worker(store, redis, clock)
    g = SubjectRef(SubjectKind.ANONYMOUS, guest.id)
    assert [c.id for c in await w.profiles.conversations_of(g)] == [conv.id]
    assert await w.profiles.conversations_of(SubjectRef(SubjectKind.ANONYMOUS, "gone")) == []


async def test_a_guest_joining_reaches_every_workers_copy_of_the_conversation() -> None:
    store, redis, clock = CountingStore(), fakeredis.FakeAsyncRedis(), FakeClock()
    a = await _user(store, "ann")
    one, two = Worker(store, redis, clock), Worker(store, redis, clock)
    conv = await store.create_conversation(title="t", member_ids=[a.id], created_by=a.id, now=T0)
    other = await store.create_conversation(title="u", member_ids=[a.id], created_by=a.id, now=T0)
    link = await store.create_share_link(
        conversation_id=conv.id, created_by=a.id, expires_at=None, now=T0
    )
    assert await two.profiles.guests_of([conv.id, other.id, conv.id]) == {
        conv.id: (),
        other.id: (),
    }
    assert await two.profiles.guests_of([conv.id, other.id]) == {conv.id: (), other.id: ()}
    assert store.participant_reads == 2  # warm: no read
    accounts = Accounts(store, Passwords(), JwtCodec("s" * 32, 60, clock), clock, one.profiles)
    joined = await accounts.join(link_id=link.id, nickname="guest")
    found = await two.profiles.guests_of([conv.id, other.id])
    assert found == {conv.id: (joined.participant.id,), other.id: ()}
    assert store.participant_reads == 3  # only the conversation the guest joined
    shared = await Conversations(store, clock, two.profiles).shared_with(
        Principal(subject=a, name="ann")
    )
    assert SubjectRef(SubjectKind.ANONYMOUS, joined.participant.id) in shared
    assert store.participant_reads == 3


async def test_a_conversations_record_and_guests_are_read_once_until_a_guest_joins() -> None:
    """A presence read of a conversation opens it from the cache (no database read when warm);
    a guest joining on another worker makes the copy cold; an unknown id is not remembered."""
    store, redis, clock = CountingStore(), fakeredis.FakeAsyncRedis(), FakeClock()
    a = await _user(store, "ann")
    one, two = Worker(store, redis, clock), Worker(store, redis, clock)
    conv = await store.create_conversation(title="t", member_ids=[a.id], created_by=a.id, now=T0)
    conversations = Conversations(store, clock, two.profiles)
    viewer = Principal(subject=a, name="ann")
    for _ in range(3):
        found, members = await conversations.visible_with_members(viewer, conv.id)
        assert (found.id, members) == (conv.id, [a])
    assert (store.conversation_gets, store.participant_reads) == (1, 1)
    link = await store.create_share_link(
        conversation_id=conv.id, created_by=a.id, expires_at=None, now=T0
    )
    accounts = Accounts(store, Passwords(), JwtCodec("s" * 32, 60, clock), clock, one.profiles)
    joined = await accounts.join(link_id=link.id, nickname="guest")
    _, members = await conversations.visible_with_members(viewer, conv.id)
    assert members == [a, SubjectRef(SubjectKind.ANONYMOUS, joined.participant.id)]
    assert (store.conversation_gets, store.participant_reads) == (2, 2)
    for _ in range(2):
        assert await two.profiles.conversation("nope") == (None, ())
    assert store.conversation_gets == 4


async def test_while_redis_is_down_the_database_answers_and_nothing_is_cached() -> None:
    server = fakeredis.FakeServer()
    store, clock = CountingStore(), FakeClock()
    redis = fakeredis.FakeAsyncRedis(server=server)
    a = await _user(store, "ann")
    conv = await store.create_conversation(title="t", member_ids=[a.id], created_by=a.id, now=T0)
    w = Worker(store, redis, clock)
    server.connected = False
    for _ in range(2):
        assert [c.id for c in await w.profiles.conversations_of(a)] == [conv.id]
        assert await w.profiles.guests_of([conv.id]) == {conv.id: ()}
    assert (store.conversation_reads, store.participant_reads) == (2, 2)
    # Each round: the user's generation, its conversations' and their guests': none answered.
    assert w.metrics.redis_errors.labels(operation="profile_generation")._value.get() == 6
    server.connected = True
    await w.profiles.conversations_of(a)
    await w.profiles.conversations_of(a)
    assert store.conversation_reads == 3


class HeldStore(CountingStore):
    """Holds every presence read until ``release`` is set; fails it while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.down = False

    async def get_presence(
        self, subjects: Sequence[SubjectRef]
    ) -> dict[SubjectRef, StoredPresence]:
        await self.release.wait()
        if self.down:
            raise StoreError("database down")
        return await super().get_presence(subjects)


async def test_a_storm_into_one_group_reads_each_cold_member_once() -> None:
    store, redis, clock = HeldStore(), fakeredis.FakeAsyncRedis(), FakeClock()
    group = [await _user(store, f"m{i}") for i in range(5)]
    w = Worker(store, redis, clock)
    storm = [asyncio.create_task(w.stored(*group)) for _ in range(10)]
    await asyncio.sleep(0.01)
    store.release.set()
    answers = await asyncio.gather(*storm)
    assert store.presence_reads == 1
    assert all(set(a) == set(group) for a in answers)


async def test_callers_waiting_on_a_failed_read_ask_again_themselves() -> None:
    store, redis, clock = HeldStore(), fakeredis.FakeAsyncRedis(), FakeClock()
    a = await _user(store, "ann")
    w = Worker(store, redis, clock)
    store.down = True
    first = asyncio.create_task(w.stored(a))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(w.stored(a))
    await asyncio.sleep(0.01)
    store.release.set()
    await asyncio.sleep(0)
    store.down = False
    with pytest.raises(StoreError):
        await first
    assert set(await second) == {a}


async def test_the_worker_that_stored_a_status_keeps_its_copy_warm_and_no_other_does() -> None:
    store, redis, clock = CountingStore(), fakeredis.FakeAsyncRedis(), FakeClock()
    a = await _user(store, "ann")
    one, two = Worker(store, redis, clock), Worker(store, redis, clock)
    await one.stored(a)
    await one.profiles.conversations_of(a)
    await two.stored(a)
    await store.set_manual_status(a, ManualChoice(ManualStatus.DND))
    await one.profiles.status_changed(a, ManualChoice(ManualStatus.DND))
    reads, listed = store.presence_reads, store.conversation_reads
    assert (await one.stored(a))[a].manual_status is ManualStatus.DND
    assert await one.profiles.conversations_of(a) == []
    # The announcement reads no database: neither the subject nor its conversations.
    assert (store.presence_reads, store.conversation_reads) == (reads, listed)
    assert (await two.stored(a))[a].manual_status is ManualStatus.DND
    assert store.presence_reads == reads + 1
    # Changed elsewhere since this worker read it: its copy is not trusted.
    await two.profiles.changed([a])
    await store.set_manual_status(a, ManualChoice(ManualStatus.AWAY))
    await one.profiles.status_changed(a, ManualChoice(ManualStatus.AWAY))
    await one.stored(a)
    assert store.presence_reads == reads + 2
