"""The host platform's tokens against a real identity provider (an HTTP server publishing its
JWKS): RS256 and ES256 accepted, keys rotated, a flood of unknown kids costing one fetch per
period, the last good key set kept while the provider is down, issuer and audience enforced,
algorithm confusion refused, users provisioned on their first token."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from presence.accounts import Accounts
from presence.auth.authenticator import Authenticator, AuthError
from presence.auth.passwords import Passwords
from presence.auth.platform import PlatformKeys, PlatformTokens
from presence.auth.tokens import JwtCodec
from presence.domain import Unauthorized
from presence.metrics import Metrics
from presence.store.memory import MemoryStore
from tests.support.fakes import FakeClock
from tests.support.identity_provider import IdentityProvider, SigningKey, new_key

SECRET = "s" * 32


def authenticator(
    provider: IdentityProvider,
    store: MemoryStore,
    *,
    provision: bool = True,
    refresh_after_s: float = 30.0,
    ttl_s: float = 300.0,
) -> Authenticator:
    keys = PlatformKeys(
        provider.jwks_url, Metrics("w"), ttl_s=ttl_s, refresh_after_s=refresh_after_s
    )
    tokens = PlatformTokens(
        keys,
        issuer=provider.issuer,
        audience=provider.audience,
        subject_claim="sub",
        name_claim="name",
    )
    clock = FakeClock(time.time())
    return Authenticator(store, JwtCodec(SECRET, 3600, clock), clock, platform=tokens,
                         provision=provision)  # fmt: skip


async def refused(auth: Authenticator, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        await auth.from_jwt(token)
    return caught.value.reason


async def test_rs256_and_es256_tokens_provision_their_users_once(
    provider: IdentityProvider,
) -> None:
    store = MemoryStore()
    auth = authenticator(provider, store)
    ec_key = provider.rotate("EC")
    one = await auth.from_jwt(provider.token("user-42", "Ada", key=provider.keys[1]))
    two = await auth.from_jwt(provider.token("user-42", "Ada L.", key=ec_key))
    assert (one.subject.id, one.name) == ("user-42", "Ada")
    assert one.subject == two.subject
    stored = await store.get_user("user-42")
    assert stored is not None and stored.username == "Ada" and stored.password_hash == ""
    assert await store.count_users() == 1
    # HS256 tokens of presence's own login keep working beside them.
    own = await store.create_user(username="bo", email="bo@example.test", password_hash="h",
                                  role=stored.role, now=stored.created_at)  # fmt: skip
    codec = JwtCodec(SECRET, 3600, FakeClock(time.time()))
    assert (await auth.from_jwt(codec.issue(own.id))).subject.id == own.id


async def test_a_provisioned_user_cannot_log_in_with_a_password(
    provider: IdentityProvider,
) -> None:
    store = MemoryStore()
    auth = authenticator(provider, store)
    await auth.from_jwt(provider.token("u1", "Ada"))
    user = await store.get_user("u1")
    assert user is not None
    clock = FakeClock()
    accounts = Accounts(store, Passwords(), JwtCodec(SECRET, 60, clock), clock)
    for password in ("", "decoy-password-for-unknown-accounts", "anything"):
        with pytest.raises(Unauthorized):
            await accounts.login(email=user.email, password=password)


async def test_without_provisioning_an_unknown_platform_user_is_refused(
    provider: IdentityProvider,
) -> None:
    auth = authenticator(provider, MemoryStore(), provision=False)
    assert await refused(auth, provider.token("u1", "Ada")) == "unknown_user"


async def test_a_rotated_key_is_fetched_once_and_unknown_kids_cannot_hammer_the_provider(
    provider: IdentityProvider,
) -> None:
    auth = authenticator(provider, MemoryStore(), refresh_after_s=0.5)
    await auth.from_jwt(provider.token("u1"))
    assert provider.fetches == 1
    forged = new_key("RSA")
    for i in range(30):
        made_up = SigningKey(f"made-up-{i}", forged.private)
        assert await refused(auth, provider.token(f"x{i}", key=made_up)) == "unknown_key"
    assert provider.fetches <= 2  # at most one refresh within the period
    await asyncio.sleep(0.6)
    rotated = provider.rotate()
    assert (await auth.from_jwt(provider.token("u2", key=rotated))).subject.id == "u2"
    assert provider.fetches <= 3


async def test_the_last_good_key_set_is_kept_while_the_provider_is_down(
    provider: IdentityProvider,
) -> None:
    auth = authenticator(provider, MemoryStore(), ttl_s=0.2, refresh_after_s=0.0)
    await auth.from_jwt(provider.token("u1"))
    provider.down = True
    await asyncio.sleep(0.3)  # the set is due for a fetch, and the fetch fails
    assert (await auth.from_jwt(provider.token("u2"))).subject.id == "u2"
    await provider.stop()  # not even answering
    assert (await auth.from_jwt(provider.token("u3"))).subject.id == "u3"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _by_hand(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = (
        b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{_b64(signature)}"


async def test_algorithm_confusion_and_foreign_tokens_are_refused(
    provider: IdentityProvider,
) -> None:
    auth = authenticator(provider, MemoryStore())
    rsa_key = provider.keys[0]
    ec_key = provider.rotate("EC")
    now = int(time.time())
    claims = {"sub": "victim", "iss": provider.issuer, "aud": provider.audience, "iat": now,
              "exp": now + 600}  # fmt: skip
    public_pem = rsa_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cases = {
        # HS256 "signed" with the published public key: refused by presence's own codec.
        "HS256 with the public key": _by_hand(
            {"alg": "HS256", "kid": rsa_key.kid, "typ": "JWT"}, claims, public_pem
        ),
        "alg none": _by_hand({"alg": "none", "kid": rsa_key.kid}, claims, None),
        # An ES256 header naming the RSA key (and the other way round): the key decides.
        "ES256 header on an RSA key": jwt.encode(
            claims, ec_key.private, algorithm="ES256", headers={"kid": rsa_key.kid}
        ),
        "RS256 header on an EC key": jwt.encode(
            claims, rsa_key.private, algorithm="RS256", headers={"kid": ec_key.kid}
        ),
        "no kid": jwt.encode(claims, rsa_key.private, algorithm="RS256"),
        "wrong issuer": provider.token("victim", iss="https://evil.test"),
        "wrong audience": provider.token("victim", aud="another-service"),
        "expired": provider.token("victim", lifetime_s=-120),
        "subject not url-safe": provider.token("a b/c"),
        "subject too long": provider.token("x" * 129),
    }
    reasons = {case: await refused(auth, token) for case, token in cases.items()}
    assert reasons == {
        "HS256 with the public key": "bad_signature",
        "alg none": "malformed",
        "ES256 header on an RSA key": "wrong_algorithm",
        "RS256 header on an EC key": "wrong_algorithm",
        "no kid": "unknown_key",
        "wrong issuer": "wrong_issuer_or_audience",
        "wrong audience": "wrong_issuer_or_audience",
        "expired": "expired",
        "subject not url-safe": "invalid_subject",
        "subject too long": "invalid_subject",
    }
