"""Service tokens: the format, the scopes an operator may grant, a token kept only as its hash,
a revoked token refused once its verification is older than RECHECK_S, and the signature a
webhook receiver checks."""

from __future__ import annotations

import pytest

from presence.auth.authenticator import AuthError
from presence.auth.services import RECHECK_S, ServiceTokens, looks_like_service_token, parse_scopes
from presence.domain import InvalidInput, NotFound
from presence.store.base import DuplicateError
from presence.store.memory import MemoryStore
from presence.webhooks import signature
from tests.support.fakes import FakeClock


def test_scopes_are_the_known_ones_each_once() -> None:
    assert parse_scopes("presence:read, events:read,presence:read") == (
        "presence:read",
        "events:read",
    )
    for bad in ("", " , ", "presence:write", "presence:read,admin"):
        with pytest.raises(InvalidInput) as refused:
            parse_scopes(bad)
        assert refused.value.code == "invalid_scopes"


async def test_a_token_is_shown_once_and_kept_only_as_its_hash() -> None:
    store, clock = MemoryStore(), FakeClock()
    tokens = ServiceTokens(store, clock)
    token = await tokens.create("push", ("presence:read",))
    assert looks_like_service_token(token)
    [record] = await tokens.list()
    assert (record.name, record.scopes) == ("push", ("presence:read",))
    assert token not in repr(record) and len(record.token_hash) == 64
    service = await tokens.verify(token)
    assert (service.name, service.scopes) == ("push", frozenset({"presence:read"}))
    with pytest.raises(DuplicateError):
        await tokens.create("push", ("events:read",))
    for name in ("", "-x", "a b", "x" * 65, "é"):
        with pytest.raises(InvalidInput):
            await tokens.create(name, ("events:read",))


async def test_a_token_that_is_not_one_is_refused_without_a_database_read() -> None:
    store, clock = MemoryStore(), FakeClock()
    tokens = ServiceTokens(store, clock)
    for token in ("", "psv_short", "pst_" + "a" * 43, "psv_" + "a" * 42 + "!"):
        with pytest.raises(AuthError) as refused:
            await tokens.verify(token)
        assert refused.value.reason == "invalid_service_token"
    with pytest.raises(AuthError):
        await tokens.verify("psv_" + "a" * 43)  # well formed, but nobody made it


async def test_a_revoked_token_stops_working_within_the_recheck_time() -> None:
    store, clock = MemoryStore(), FakeClock()
    on_one, on_two = ServiceTokens(store, clock), ServiceTokens(store, clock)
    token = await on_one.create("analytics", ("events:read",))
    await on_one.verify(token)
    await on_one.revoke("analytics")
    with pytest.raises(AuthError):
        await on_two.verify(token)  # a worker that had not verified it refuses at once
    await on_one.verify(token)  # trusted until its verification is RECHECK_S old
    clock.advance(RECHECK_S)
    with pytest.raises(AuthError):
        await on_one.verify(token)
    with pytest.raises(NotFound):
        await on_one.revoke("analytics")


def test_a_webhook_signature_is_the_hmac_sha256_of_the_exact_body() -> None:
    # RFC 4231 test case 2: key "Jefe", "what do ya want for nothing?".
    assert signature(b"Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
