"""One suite, every store: the in-memory store and MongoDB (the real MongoDB-compatible server)
must behave the same for everything the service relies on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from presence.domain import LastSeenPrivacy, ManualStatus, Role, SubjectKind, SubjectRef, from_epoch
from presence.store.base import (
    DuplicateError,
    ManualChoice,
    OnlineChange,
    ServiceTokenRecord,
    Store,
)
from presence.store.memory import MemoryStore
from presence.store.mongo import MongoStore

T0 = from_epoch(1_800_000_000.0)


@pytest.fixture(params=["memory", "mongo"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url: str = request.getfixturevalue("mongo_url")
    name = f"c_{uuid.uuid4().hex[:10]}"
    mongo = MongoStore.from_url(url, name)
    await mongo.ensure_indexes()
    yield mongo
    await mongo.close()
    admin: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    await admin.drop_database(name)
    await admin.close()


async def _user(store: Store, name: str = "ann", role: Role = Role.USER) -> SubjectRef:
    user = await store.create_user(
        username=name, email=f"{name}@Example.test", password_hash="hash", role=role, now=T0
    )
    return SubjectRef(SubjectKind.USER, user.id)


async def test_users_round_trip_with_case_folded_unique_email(store: Store) -> None:
    subject = await _user(store)
    user = await store.get_user(subject.id)
    assert user is not None
    assert (user.username, user.email, user.role, user.is_active) == (
        "ann",
        "ann@example.test",
        Role.USER,
        True,
    )
    assert user.created_at == T0
    assert await store.find_user_by_email("ANN@example.TEST") == user
    with pytest.raises(DuplicateError):
        await _user(store)
    assert await store.count_users() == 1
    assert await store.get_user("missing") is None


async def test_overlapping_writes_of_one_subject_all_land(store: Store) -> None:
    """A status set on one worker while another persists the subject's connection and a
    third its activity: MongoDB applies every update of one document atomically, and the
    service relies on it (a lost manual status would show an invisible user online)."""
    for round_ in range(40):
        subject = await _user(store, f"u{round_}")
        at = T0 + timedelta(seconds=round_)
        await asyncio.gather(
            store.set_manual_status(subject, ManualChoice(ManualStatus.INVISIBLE)),
            store.set_online_many([OnlineChange(subject, True, last_seen=at)]),
            store.record_activity(subject, at, mark_online=True),
            store.set_last_seen_privacy(subject.id, LastSeenPrivacy.HIDDEN),
        )
        stored = (await store.get_presence([subject]))[subject]
        assert (
            stored.manual_status,
            stored.is_online,
            stored.last_seen,
            stored.last_active_at,
            stored.privacy,
        ) == (ManualStatus.INVISIBLE, True, at, at, LastSeenPrivacy.HIDDEN)


async def test_indexes_can_be_created_again(store: Store) -> None:
    await store.ensure_indexes()
    await store.ensure_indexes()
    await store.ping()


async def test_deactivation_is_stored(store: Store) -> None:
    subject = await _user(store)
    assert await store.set_user_active(subject.id, False)
    user = await store.get_user(subject.id)
    assert user is not None
    assert not user.is_active
    assert not await store.set_user_active("missing", False)


async def test_existing_user_ids(store: Store) -> None:
    a = await _user(store, "a")
    b = await _user(store, "b")
    assert await store.existing_user_ids([a.id, b.id, "nope"]) == {a.id, b.id}


async def test_conversations_list_by_member_oldest_first(store: Store) -> None:
    a, b, c = [await _user(store, n) for n in ("a", "b", "c")]
    first = await store.create_conversation(
        title="one", member_ids=[a.id, b.id], created_by=a.id, now=T0
    )
    second = await store.create_conversation(
        title="two", member_ids=[a.id, c.id], created_by=a.id, now=T0 + timedelta(seconds=1)
    )
    assert [x.id for x in await store.list_conversations(a.id)] == [first.id, second.id]
    assert [x.id for x in await store.list_conversations(b.id)] == [first.id]
    assert await store.get_conversation(first.id) == first
    assert first.member_ids == (a.id, b.id)
    assert sorted(await store.conversation_ids_of(a.id)) == sorted([first.id, second.id])
    assert await store.conversation_ids_of(c.id) == [second.id]
    assert await store.conversation_ids_of("nobody") == []
    many = await store.get_conversations([second.id, "missing", first.id, second.id])
    assert sorted(x.id for x in many) == sorted([first.id, second.id])
    assert {x.id: x for x in many}[first.id] == first
    assert await store.get_conversations([]) == []


async def test_share_links_and_participants(store: Store) -> None:
    a = await _user(store)
    conv = await store.create_conversation(title="t", member_ids=[a.id], created_by=a.id, now=T0)
    link = await store.create_share_link(
        conversation_id=conv.id, created_by=a.id, expires_at=T0 + timedelta(hours=1), now=T0
    )
    assert await store.get_share_link(link.id) == link
    guest = await store.create_participant(
        conversation_id=conv.id, link_id=link.id, nickname="guest", token_hash="h1", now=T0
    )
    assert await store.find_participant_by_token_hash("h1") == guest
    assert await store.find_participant_by_token_hash("h2") is None
    assert await store.get_participant(guest.id) == guest
    assert [p.id for p in await store.list_participants(conv.id)] == [guest.id]
    assert await store.count_participants() == 1
    assert await store.set_participant_active(guest.id, False)
    assert await store.list_participants(conv.id) == []
    assert await store.count_participants() == 0


async def test_last_active_at_never_moves_backwards(store: Store) -> None:
    subject = await _user(store)
    later, earlier = T0 + timedelta(seconds=30), T0 + timedelta(seconds=10)
    assert await store.record_activity(subject, later, mark_online=True)
    assert await store.record_activity(subject, earlier, mark_online=False)
    found = (await store.get_presence([subject]))[subject]
    assert found.last_active_at == later
    assert found.is_online
    assert not await store.record_activity(
        SubjectRef(SubjectKind.USER, "missing"), later, mark_online=False
    )


async def test_online_flag_last_seen_and_manual_status(store: Store) -> None:
    subject = await _user(store)
    seen = T0 + timedelta(seconds=5)
    assert await store.set_online(subject, False, last_seen=seen)
    assert await store.set_online(subject, False, last_seen=T0)  # never lowered
    assert await store.set_manual_status(subject, ManualChoice(ManualStatus.DND))
    found = (await store.get_presence([subject]))[subject]
    assert (found.is_online, found.last_seen, found.manual_status) == (
        False,
        seen,
        ManualStatus.DND,
    )
    assert found.name == "ann"


async def test_a_custom_status_is_stored_and_cleared_only_at_its_own_end(store: Store) -> None:
    subject = await _user(store)
    ends = T0 + timedelta(hours=1, microseconds=1500)  # kept to the millisecond
    choice = ManualChoice(ManualStatus.DND, "in a meeting", ends)
    assert await store.set_manual_status(subject, choice)
    found = (await store.get_presence([subject]))[subject]
    kept = T0 + timedelta(hours=1, milliseconds=1)
    assert (found.manual_status, found.status_text, found.status_until) == (
        ManualStatus.DND,
        "in a meeting",
        kept,
    )
    assert await store.expiring_statuses(limit=10) == [(subject, kept)]
    # Another end (a newer choice) is never cleared by the old one's moment.
    assert not await store.clear_expired_status(subject, T0)
    assert await store.clear_expired_status(subject, kept)
    assert not await store.clear_expired_status(subject, kept)  # once
    found = (await store.get_presence([subject]))[subject]
    assert (found.manual_status, found.status_text, found.status_until) == (
        ManualStatus.ONLINE,
        None,
        None,
    )
    assert await store.expiring_statuses(limit=10) == []
    # A choice without an end clears the text and the end of the one before.
    assert await store.set_manual_status(subject, ManualChoice(ManualStatus.AWAY, "x", kept))
    assert await store.set_manual_status(subject, ManualChoice(ManualStatus.AWAY))
    found = (await store.get_presence([subject]))[subject]
    assert (found.status_text, found.status_until) == (None, None)


async def test_last_seen_privacy_is_stored_with_the_user(store: Store) -> None:
    subject = await _user(store)
    assert (await store.get_presence([subject]))[subject].privacy is LastSeenPrivacy.EXACT
    assert await store.set_last_seen_privacy(subject.id, LastSeenPrivacy.HIDDEN)
    assert (await store.get_presence([subject]))[subject].privacy is LastSeenPrivacy.HIDDEN
    assert not await store.set_last_seen_privacy("missing", LastSeenPrivacy.HIDDEN)


async def test_online_flags_of_many_subjects_in_one_call(store: Store) -> None:
    a, b = await _user(store, "ann"), await _user(store, "bob")
    conv = await store.create_conversation(title="t", member_ids=[a.id], created_by=a.id, now=T0)
    link = await store.create_share_link(
        conversation_id=conv.id, created_by=a.id, expires_at=None, now=T0
    )
    guest = await store.create_participant(
        conversation_id=conv.id, link_id=link.id, nickname="g", token_hash="h", now=T0
    )
    g = SubjectRef(SubjectKind.ANONYMOUS, guest.id)
    seen = T0 + timedelta(seconds=5)
    assert await store.set_online(a, False, last_seen=seen)
    written = await store.set_online_many(
        [
            OnlineChange(a, True, last_seen=T0),  # lastSeen never lowered
            OnlineChange(b, False, last_seen=seen),
            OnlineChange(g, True),
            OnlineChange(SubjectRef(SubjectKind.USER, "missing"), True),
        ]
    )
    assert written == 3
    found = await store.get_presence([a, b, g])
    assert (found[a].is_online, found[a].last_seen) == (True, seen)
    assert (found[b].is_online, found[b].last_seen) == (False, seen)
    assert (found[g].is_online, found[g].last_seen) == (True, None)
    assert await store.set_online_many([]) == 0


async def test_presence_of_users_and_guests_unknown_left_out(store: Store) -> None:
    a = await _user(store)
    conv = await store.create_conversation(title="t", member_ids=[a.id], created_by=a.id, now=T0)
    link = await store.create_share_link(
        conversation_id=conv.id, created_by=a.id, expires_at=None, now=T0
    )
    guest = await store.create_participant(
        conversation_id=conv.id, link_id=link.id, nickname="g", token_hash="h", now=T0
    )
    g = SubjectRef(SubjectKind.ANONYMOUS, guest.id)
    missing = SubjectRef(SubjectKind.USER, "missing")
    found = await store.get_presence([a, g, missing])
    assert set(found) == {a, g}
    assert found[g].name == "g"
    assert found[g].manual_status is ManualStatus.ONLINE
    assert found[g].last_active_at is None


async def test_leader_epochs_only_grow(store: Store) -> None:
    assert await store.leader_epoch() == 0
    assert await store.next_leader_epoch() == 1
    assert await store.next_leader_epoch() == 2
    assert await store.leader_epoch() == 2


async def test_sweep_writes_are_fenced_by_epoch(store: Store) -> None:
    subject = await _user(store)
    await store.record_activity(subject, T0, mark_online=True)
    seen = T0 + timedelta(seconds=1)
    assert await store.sweep_offline([(subject, seen)], epoch=2, worker_id="w1", at=T0) == 1
    found = (await store.get_presence([subject]))[subject]
    assert (found.is_online, found.last_seen) == (False, seen)
    await store.set_online(subject, True)
    # A stale leader (epoch 1) is refused; the current one (2) and newer ones are not.
    assert await store.sweep_offline([(subject, seen)], epoch=1, worker_id="w0", at=T0) == 0
    assert (await store.get_presence([subject]))[subject].is_online
    missing = SubjectRef(SubjectKind.USER, "missing")
    other = await _user(store, "other")
    batch = [(subject, seen), (missing, seen), (other, seen)]
    assert await store.sweep_offline(batch, epoch=3, worker_id="w2", at=T0) == 2
    both = await store.get_presence([subject, other])
    assert [both[s].is_online for s in (subject, other)] == [False, False]


async def test_service_tokens_by_hash_unique_names_and_hashes(store: Store) -> None:
    push = ServiceTokenRecord("push", "a" * 64, ("presence:read",), T0)
    feed = ServiceTokenRecord("feed", "b" * 64, ("events:read", "presence:read"), T0)
    await store.create_service_token(push)
    await store.create_service_token(feed)
    assert await store.find_service_token("b" * 64) == feed
    assert await store.find_service_token("c" * 64) is None
    for taken in (
        ServiceTokenRecord("push", "c" * 64, ("events:read",), T0),
        ServiceTokenRecord("other", "a" * 64, ("events:read",), T0),
    ):
        with pytest.raises(DuplicateError):
            await store.create_service_token(taken)
    assert await store.list_service_tokens() == [feed, push]
    assert await store.delete_service_token("push") is True
    assert await store.delete_service_token("push") is False
    assert await store.find_service_token("a" * 64) is None
    assert await store.list_service_tokens() == [feed]


async def test_directory_puts_are_idempotent_upserts_that_say_what_was_there(
    store: Store,
) -> None:
    assert (
        await store.put_user(
            user_id="plat-1", username="Ada", is_active=True, email="a@platform.invalid", now=T0
        )
        is None
    )
    before = await store.put_user(
        user_id="plat-1", username="Ada L.", is_active=False, email="a@platform.invalid", now=T0
    )
    assert before is not None and (before.username, before.is_active) == ("Ada", True)
    user = await store.get_user("plat-1")
    assert user is not None
    assert (user.username, user.is_active, user.password_hash) == ("Ada L.", False, "")
    subject = SubjectRef(SubjectKind.USER, "plat-1")
    assert (await store.get_presence([subject]))[subject].manual_status is ManualStatus.ONLINE

    assert (
        await store.put_conversation(
            conversation_id="team-1", title="Team", member_ids=["plat-1", "plat-2"], now=T0
        )
        is None
    )
    assert await store.put_conversation(
        conversation_id="team-1", title="Team!", member_ids=["plat-2", "plat-3"], now=T0
    ) == ("plat-1", "plat-2")
    found = await store.get_conversation("team-1")
    assert found is not None
    assert (found.title, found.member_ids) == ("Team!", ("plat-2", "plat-3"))
    assert [c.id for c in await store.list_conversations("plat-3")] == ["team-1"]
    assert await store.list_conversations("plat-1") == []
    assert await store.conversation_ids_of("plat-1") == []
    assert await store.conversation_ids_of("plat-2") == ["team-1"]
    assert await store.delete_conversation("team-1") == ("plat-2", "plat-3")
    assert await store.delete_conversation("team-1") is None
    assert await store.get_conversation("team-1") is None


async def test_a_large_conversation_is_found_from_each_member(store: Store) -> None:
    members = [f"member-{i}" for i in range(5000)]
    await store.put_conversation(conversation_id="big", title="All", member_ids=members, now=T0)
    for member in ("member-0", "member-2500", "member-4999"):
        assert [c.id for c in await store.list_conversations(member)] == ["big"]
    found = await store.get_conversation("big")
    assert found is not None and len(found.member_ids) == 5000
    await store.put_conversation(
        conversation_id="big", title="All", member_ids=members[:10], now=T0
    )
    assert await store.list_conversations("member-4999") == []


async def test_conversations_stored_before_memberships_existed_are_found_after_a_start(
    mongo_url: str,
) -> None:
    """An older deployment's conversations carry only their member list: the first start of
    this version derives their memberships."""
    name = f"c_{uuid.uuid4().hex[:10]}"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    try:
        await client[name]["conversations"].insert_one(
            {
                "_id": "old",
                "title": "t",
                "memberIds": ["a", "b"],
                "createdBy": "a",
                "createdAt": T0,
            }
        )
        store = MongoStore(client, name)
        await store.ensure_indexes()
        await store.ensure_indexes()  # idempotent
        assert [c.id for c in await store.list_conversations("b")] == ["old"]
        assert await client[name]["memberships"].count_documents({}) == 2
    finally:
        await client.drop_database(name)
        await client.close()
