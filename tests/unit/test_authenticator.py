"""A deactivated user or a revoked guest is refused within the cache's recheck period."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from presence.auth.authenticator import Authenticator, AuthError
from presence.auth.cache import RECHECK_S, VerifiedCache
from presence.auth.tokens import JwtCodec, new_session_token, session_token_hash
from presence.domain import Role, from_epoch
from presence.store.memory import MemoryStore
from tests.support.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


async def test_deactivation_bites_within_the_recheck_period(clock: FakeClock) -> None:
    store = MemoryStore()
    codec = JwtCodec("k" * 40, 3600, clock)
    auth = Authenticator(store, codec, clock)
    user = await store.create_user(
        username="ann",
        email="ann@example.test",
        password_hash="x",
        role=Role.USER,
        now=from_epoch(clock.now()),
    )
    token = codec.issue(user.id)
    assert (await auth.from_jwt(token)).subject.id == user.id
    await store.set_user_active(user.id, False)
    clock.advance(RECHECK_S - 1)
    assert (await auth.from_jwt(token)).subject.id == user.id  # still cached
    clock.advance(1)
    with pytest.raises(AuthError) as caught:
        await auth.from_jwt(token)
    assert caught.value.reason == "inactive_user"
    assert RECHECK_S < 60


async def test_a_guest_is_refused_once_its_link_expires_even_when_cached(
    clock: FakeClock,
) -> None:
    store = MemoryStore()
    auth = Authenticator(store, JwtCodec("k" * 40, 3600, clock), clock)
    now = from_epoch(clock.now())
    link = await store.create_share_link(
        conversation_id="c", created_by="u", expires_at=now + timedelta(seconds=10), now=now
    )
    token = new_session_token()
    await store.create_participant(
        conversation_id="c",
        link_id=link.id,
        nickname="g",
        token_hash=session_token_hash(token),
        now=now,
    )
    assert (await auth.from_session_token(token)).conversation_id == "c"
    clock.advance(10)
    with pytest.raises(AuthError) as caught:
        await auth.from_session_token(token)
    assert caught.value.reason == "link_expired"


async def test_a_cache_of_size_zero_checks_the_database_on_every_call(clock: FakeClock) -> None:
    store = MemoryStore()
    codec = JwtCodec("k" * 40, 3600, clock)
    auth = Authenticator(store, codec, clock, VerifiedCache(capacity=0))
    user = await store.create_user(
        username="ann",
        email="ann@example.test",
        password_hash="x",
        role=Role.USER,
        now=from_epoch(clock.now()),
    )
    token = codec.issue(user.id)
    assert (await auth.from_jwt(token)).subject.id == user.id
    assert len(auth.cache) == 0
    await store.set_user_active(user.id, False)
    with pytest.raises(AuthError):
        await auth.from_jwt(token)
