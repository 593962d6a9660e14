"""Resolve a bearer JWT or a session token to a :class:`Principal`, or refuse with a reason."""

from __future__ import annotations

from presence.auth.cache import VerifiedCache
from presence.auth.tokens import (
    MAX_TOKEN_LENGTH,
    JwtCodec,
    TokenError,
    looks_like_session_token,
    session_token_hash,
)
from presence.clock import Clock
from presence.domain import Principal, SubjectKind, SubjectRef, to_epoch
from presence.store.base import Store


class AuthError(Exception):
    """Refused credentials. ``reason`` is a stable code for logs and metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Authenticator:
    def __init__(
        self, store: Store, codec: JwtCodec, clock: Clock, cache: VerifiedCache | None = None
    ) -> None:
        self._store = store
        self._codec = codec
        self._clock = clock
        self._cache = cache if cache is not None else VerifiedCache()

    @property
    def cache(self) -> VerifiedCache:
        return self._cache

    async def from_jwt(self, token: str) -> Principal:
        now = self._clock.now()
        cached = self._cache.get("j:" + token, now)
        if cached is not None:
            return cached
        try:
            claims = self._codec.verify(token)
        except TokenError as exc:
            raise AuthError(exc.reason, "invalid or expired token") from None
        user = await self._store.get_user(claims.user_id)
        if user is None:
            raise AuthError("unknown_user", "invalid or expired token")
        if not user.is_active:
            raise AuthError("inactive_user", "account is deactivated")
        principal = Principal(SubjectRef(SubjectKind.USER, user.id), user.username, user.role)
        self._cache.put("j:" + token, principal, now, claims.expires_at)
        return principal

    async def from_session_token(self, token: str) -> Principal:
        now = self._clock.now()
        if len(token) > MAX_TOKEN_LENGTH or not looks_like_session_token(token):
            raise AuthError("malformed_session", "invalid session token")
        token_hash = session_token_hash(token)
        cached = self._cache.get("s:" + token_hash, now)
        if cached is not None:
            return cached
        participant = await self._store.find_participant_by_token_hash(token_hash)
        if participant is None:
            raise AuthError("unknown_session", "invalid session token")
        if not participant.is_active:
            raise AuthError("revoked_session", "session was revoked")
        link = await self._store.get_share_link(participant.share_link_id)
        if link is None or not link.is_active:
            raise AuthError("link_revoked", "share link is no longer active")
        expires_at = None if link.expires_at is None else to_epoch(link.expires_at)
        if expires_at is not None and expires_at <= now:
            raise AuthError("link_expired", "share link has expired")
        principal = Principal(
            SubjectRef(SubjectKind.ANONYMOUS, participant.id),
            participant.nickname,
            conversation_id=participant.conversation_id,
        )
        self._cache.put("s:" + token_hash, principal, now, expires_at)
        return principal
