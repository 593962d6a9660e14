"""JWTs for registered users (HS256 only) and opaque session tokens for anonymous participants."""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import jwt

from presence.clock import Clock

# Never derived from the token's own header (RFC 8725 §2.1): alg=none and key confusion die here.
_ALGORITHMS = ["HS256"]
_REQUIRED_CLAIMS = ["exp", "iat", "sub"]
# Bigger than any token we issue by an order of magnitude; larger input is refused unparsed.
MAX_TOKEN_LENGTH = 4096
_SESSION_PREFIX = "pst_"
_SESSION_RE = re.compile(r"^pst_[A-Za-z0-9_-]{43}$")


class TokenError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: str
    expires_at: float


class JwtCodec:
    def __init__(self, secret: str, ttl_s: float, clock: Clock) -> None:
        self._secret = secret
        self._ttl_s = ttl_s
        self._clock = clock

    def issue(self, user_id: str) -> str:
        now = int(self._clock.now())
        payload = {"sub": user_id, "iat": now, "exp": now + int(self._ttl_s)}
        return jwt.encode(payload, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Claims:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("too_large")
        with refusals():
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=_ALGORITHMS,
                options={"require": _REQUIRED_CLAIMS},
            )
        sub, exp = payload.get("sub"), payload.get("exp")
        if not isinstance(sub, str) or not sub or not isinstance(exp, int | float):
            raise TokenError("malformed")
        return Claims(sub, float(exp))


# PyJWT's refusals, most specific first, as the reasons logs and metrics name.
_REASONS: list[tuple[type[jwt.InvalidTokenError], str]] = [
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidIssuerError, "wrong_issuer_or_audience"),
    (jwt.InvalidAudienceError, "wrong_issuer_or_audience"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidTokenError, "malformed"),
]


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """PyJWT's refusal inside becomes a :class:`TokenError` with its reason."""
    try:
        yield
    except jwt.InvalidTokenError as exc:
        reason = next(r for kind, r in _REASONS if isinstance(exc, kind))
        raise TokenError(reason) from None


def claimed_subject(token: str) -> str | None:
    """The ``sub`` a token claims, *unverified*: only to count failed attempts per account."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    sub = payload.get("sub")
    return sub[:128] if isinstance(sub, str) and sub else None


def new_session_token() -> str:
    """256 random bits; only its hash is ever stored."""
    return _SESSION_PREFIX + secrets.token_urlsafe(32)


def session_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_session_token(token: str) -> bool:
    """Cheap format check so random garbage never reaches the database."""
    return bool(_SESSION_RE.match(token))
