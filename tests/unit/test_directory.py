"""Directory sync's policy on the in-memory store and fakeredis: idempotent puts, exactly the
members added and removed told to the listeners, every worker's cached copy made cold, a
deactivation told once, and bad input refused before anything is stored."""

from __future__ import annotations

import fakeredis
import pytest

from presence.contract.http import MAX_DIRECTORY_MEMBERS
from presence.directory import Directory, MembershipChange
from presence.domain import InvalidInput, NotFound, SubjectKind, SubjectRef
from presence.keys import Keys
from presence.metrics import Metrics
from presence.profiles import Profiles
from presence.store.memory import MemoryStore
from tests.support.fakes import FakeClock


class Recording:
    def __init__(self) -> None:
        self.changes: list[MembershipChange] = []
        self.deactivated: list[str] = []

    async def on_membership(self, change: MembershipChange) -> None:
        self.changes.append(change)

    async def on_deactivated(self, user_id: str) -> None:
        self.deactivated.append(user_id)


def directory() -> tuple[Directory, MemoryStore, Profiles, Recording]:
    store, clock = MemoryStore(), FakeClock()
    profiles = Profiles(
        store, fakeredis.FakeAsyncRedis(), Keys("t:"), clock, Metrics("w"), capacity=100, ttl_s=60
    )
    made = Directory(store, profiles, clock)
    heard = Recording()
    made.add_listener(heard)
    return made, store, profiles, heard


async def test_members_added_and_removed_are_told_and_every_copy_goes_cold() -> None:
    d, store, profiles, heard = directory()
    assert (await d.put_conversation("team", "Team", ["a", "b", "a"])).created
    ann = SubjectRef(SubjectKind.USER, "a")
    assert [c.id for c in await profiles.conversations_of(ann)] == ["team"]
    outcome = await d.put_conversation("team", "Team", ["b", "c"])
    assert (outcome.created, outcome.added, outcome.removed) == (False, 1, 1)
    assert heard.changes == [
        MembershipChange("team", ("a", "b"), ()),
        MembershipChange("team", ("c",), ("a",)),
    ]
    assert await profiles.conversations_of(ann) == []  # the cached copy was not trusted
    same = await d.put_conversation("team", "Team", ["b", "c"])
    assert (same.added, same.removed) == (0, 0) and len(heard.changes) == 2
    record, _ = await profiles.conversation("team")
    assert record is not None and record.member_ids == ("b", "c")
    await d.delete_conversation("team")
    assert heard.changes[-1] == MembershipChange("team", (), ("b", "c"))
    assert await store.get_conversation("team") is None
    with pytest.raises(NotFound):
        await d.delete_conversation("team")


async def test_a_deactivation_is_told_once_and_a_user_is_created_without_password() -> None:
    d, store, _, heard = directory()
    assert (await d.put_user("u-1", "Ada", True)).created
    assert not (await d.put_user("u-1", "Ada", False)).created
    await d.put_user("u-1", "Ada", False)
    assert heard.deactivated == ["u-1"]
    user = await store.get_user("u-1")
    assert user is not None and (user.is_active, user.password_hash) == (False, "")
    await d.put_user("u-2", "Bo", False)  # created inactive: nothing live to close, told anyway
    assert heard.deactivated == ["u-1", "u-2"]


async def test_bad_ids_and_too_many_members_change_nothing() -> None:
    d, store, _, heard = directory()
    for cid, members, code in (
        ("a/b", ["x"], "invalid_id"),
        ("ok", ["x", "not url safe"], "invalid_id"),
        ("ok", ["x" * 129], "invalid_id"),
        ("ok", [f"m{i}" for i in range(MAX_DIRECTORY_MEMBERS + 1)], "too_many_members"),
    ):
        with pytest.raises(InvalidInput) as refused:
            await d.put_conversation(cid, "t", members)
        assert refused.value.code == code
    with pytest.raises(InvalidInput):
        await d.put_user("a b", "x", True)
    assert await store.get_conversation("ok") is None and heard.changes == []
