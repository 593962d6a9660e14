"""JWT verification refuses every forged or stale token; session tokens are opaque and hashed."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from presence.auth.cache import RECHECK_S, VerifiedCache
from presence.auth.tokens import (
    JwtCodec,
    TokenError,
    looks_like_session_token,
    new_session_token,
    session_token_hash,
)
from presence.clock import SystemClock
from presence.domain import Principal, SubjectKind, SubjectRef

SECRET = "s" * 40


def codec() -> JwtCodec:
    return JwtCodec(SECRET, 3600, SystemClock())


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_an_issued_token_verifies_to_its_user() -> None:
    c = codec()
    claims = c.verify(c.issue("u1"))
    assert claims.user_id == "u1"
    assert claims.expires_at > time.time()


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_refused(alg: str) -> None:
    now = int(time.time())
    token = (
        f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64({'sub': 'u1', 'iat': now, 'exp': now + 60})}."
    )
    with pytest.raises(TokenError):
        codec().verify(token)


def test_other_algorithms_and_keys_are_refused() -> None:
    now = int(time.time())
    claims = {"sub": "u1", "iat": now, "exp": now + 60}
    with pytest.raises(TokenError, match="bad_signature"):
        codec().verify(jwt.encode(claims, "w" * 40, algorithm="HS256"))
    with pytest.raises(TokenError):
        codec().verify(jwt.encode(claims, SECRET * 2, algorithm="HS512"))


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"sub": "u1", "iat": 0, "exp": 1}, "expired"),
        ({"sub": "u1", "iat": 0}, "missing_claim"),
        ({"iat": 0, "exp": 2**40}, "missing_claim"),
        ({"sub": "u1", "exp": 2**40}, "missing_claim"),
        ({"sub": "u1", "iat": 0, "exp": 2**40, "nbf": 2**40}, "not_yet_valid"),
        ({"sub": 5, "iat": 0, "exp": 2**40}, "malformed"),
    ],
)
def test_stale_or_incomplete_claims_are_refused(claims: dict[str, object], reason: str) -> None:
    with pytest.raises(TokenError) as caught:
        codec().verify(jwt.encode(claims, SECRET, algorithm="HS256"))
    assert caught.value.reason == reason


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "é" * 10, "x" * 100_000])
def test_garbage_and_huge_tokens_are_refused(token: str) -> None:
    with pytest.raises(TokenError):
        codec().verify(token)


def test_session_tokens_are_random_checked_by_format_and_stored_as_a_hash() -> None:
    first, second = new_session_token(), new_session_token()
    assert first != second
    assert looks_like_session_token(first)
    assert not looks_like_session_token(first + "x")
    assert not looks_like_session_token("pst_" + "!" * 43)
    digest = session_token_hash(first)
    assert len(digest) == 64
    assert first not in digest


def _principal(ident: str) -> Principal:
    return Principal(SubjectRef(SubjectKind.USER, ident), ident)


def test_verified_cache_honours_expiry_recheck_and_capacity() -> None:
    cache = VerifiedCache(capacity=2)
    cache.put("a", _principal("a"), now=100.0, expires_at=105.0)
    assert cache.get("a", 104.9) is not None
    assert cache.get("a", 105.0) is None  # never outlives the credential
    cache.put("b", _principal("b"), now=100.0, expires_at=None)
    assert cache.get("b", 100.0 + RECHECK_S - 0.1) is not None
    assert cache.get("b", 100.0 + RECHECK_S) is None  # re-checked against the database
    for key in ("c", "d", "e"):
        cache.put(key, _principal(key), now=200.0, expires_at=None)
    assert len(cache) == 2
    assert cache.get("c", 200.0) is None
    assert cache.get("e", 200.0) is not None
    assert RECHECK_S <= 60
