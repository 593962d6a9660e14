"""Tokens of the host platform's identity provider (SPEC §12): RS256 or ES256, signed with the
keys its JWKS URL publishes.

The keys are fetched and parsed by PyJWT's JWKS client; when they are fetched is decided here:

* the key set is kept for ``ttl_s`` and then fetched again;
* a token naming a ``kid`` the set does not have fetches it at once, but at most once per
  ``refresh_after_s`` (a flood of made-up ``kid``s costs the provider one request per period);
* a failed fetch keeps the last good set, and is not tried again for ``refresh_after_s``.

Which algorithm a token may use comes from its key, never from the token: an RSA key verifies
RS256 only, an EC P-256 key ES256 only; a symmetric key in the set is never used (an HS256
token "signed" with a public key, ``alg: none`` and a key of the wrong type are refused).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import PyJWK, PyJWKClient, PyJWKSet
from jwt.exceptions import PyJWKClientError, PyJWKSetError

from presence.auth.tokens import MAX_TOKEN_LENGTH, TokenError, refusals
from presence.contract.fields import MAX_ID_CHARS
from presence.metrics import Metrics

# The platform's ids: URL-safe, as they appear in paths and Redis keys (SPEC §12).
_PLATFORM_ID = re.compile(rf"^[A-Za-z0-9._~-]{{1,{MAX_ID_CHARS}}}$")
PLATFORM_ALGORITHMS = ("RS256", "ES256")


def is_platform_id(value: str) -> bool:
    return bool(_PLATFORM_ID.match(value))


def placeholder_email(user_id: str) -> str:
    """What a platform user has where presence's own accounts keep an email (unique, never
    deliverable, never a login: such a user has no password here)."""
    return f"{hashlib.sha256(user_id.encode()).hexdigest()[:32]}@platform.invalid"


def algorithm_of(key: PyJWK) -> str | None:
    """The one algorithm a key verifies, from what the key is (not from what it claims)."""
    public = key.key
    if isinstance(public, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        return "ES256"
    return None


@dataclass(frozen=True, slots=True)
class PlatformClaims:
    user_id: str
    name: str
    expires_at: float


class PlatformKeys:
    def __init__(
        self,
        url: str,
        metrics: Metrics,
        *,
        ttl_s: float = 300.0,
        refresh_after_s: float = 30.0,
        timeout_s: float = 5.0,
    ) -> None:
        # The client's own cache is off: the policy above decides when it fetches.
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=timeout_s)
        self._metrics = metrics
        self._ttl_s = ttl_s
        self._refresh_after_s = refresh_after_s
        self._keys: PyJWKSet | None = None
        self._fetched_at = -float("inf")  # monotonic: the last good fetch
        self._tried_at = -float("inf")  # monotonic: the last attempt
        self._fetching = asyncio.Lock()

    async def key(self, kid: str) -> PyJWK | None:
        if self._keys is None or time.monotonic() - self._fetched_at >= self._ttl_s:
            await self._fetch()
        found = _match(self._keys, kid)
        if found is None:
            await self._fetch()
            found = _match(self._keys, kid)
        return found

    async def _fetch(self) -> None:
        async with self._fetching:
            now = time.monotonic()
            if now - self._tried_at < self._refresh_after_s:
                return  # fetched (or tried) a moment ago, maybe while this call waited
            self._tried_at = now
            try:
                keys = await asyncio.to_thread(self._client.get_jwk_set, True)
            except (PyJWKClientError, PyJWKSetError):
                self._metrics.jwks_fetches.labels(outcome="failed").inc()
                return  # the last good set stays
            self._keys, self._fetched_at = keys, time.monotonic()
            self._metrics.jwks_fetches.labels(outcome="ok").inc()


def _match(keys: PyJWKSet | None, kid: str) -> PyJWK | None:
    if keys is None:
        return None
    for key in keys.keys:
        if key.key_id == kid:
            return key
    return None


class PlatformTokens:
    def __init__(
        self,
        keys: PlatformKeys,
        *,
        issuer: str | None,
        audience: str | None,
        subject_claim: str,
        name_claim: str,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._subject_claim = subject_claim
        self._name_claim = name_claim

    async def verify(self, token: str, header: dict[str, Any]) -> PlatformClaims:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("too_large")
        kid = header.get("kid")
        key = await self._keys.key(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("unknown_key")
        allowed = algorithm_of(key)
        if allowed is None or header.get("alg") != allowed:
            raise TokenError("wrong_algorithm")
        with refusals():
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[allowed],
                issuer=self._issuer,
                audience=self._audience,
                options={
                    "require": ["exp", self._subject_claim],
                    "verify_aud": self._audience is not None,
                },
            )
        subject = claims.get(self._subject_claim)
        if not isinstance(subject, str) or not is_platform_id(subject):
            raise TokenError("invalid_subject")
        name = claims.get(self._name_claim)
        if not isinstance(name, str) or not name.strip():
            name = subject
        return PlatformClaims(subject, name.strip()[:64], float(claims["exp"]))
