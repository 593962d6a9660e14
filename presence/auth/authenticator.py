"""Resolve a bearer JWT or a session token to a :class:`Principal`, or refuse with a reason."""

from __future__ import annotations

from typing import Any

import jwt

from presence.auth.cache import VerifiedCache
from presence.auth.platform import PLATFORM_ALGORITHMS, PlatformTokens, placeholder_email
from presence.auth.tokens import (
    MAX_TOKEN_LENGTH,
    JwtCodec,
    TokenError,
    looks_like_session_token,
    session_token_hash,
)
from presence.clock import Clock
from presence.domain import Principal, Role, SubjectKind, SubjectRef, from_epoch, to_epoch
from presence.store.base import DuplicateError, Store, UserRecord


class AuthError(Exception):
    """Refused credentials. ``reason`` is a stable code for logs and metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Authenticator:
    def __init__(
        self,
        store: Store,
        codec: JwtCodec,
        clock: Clock,
        cache: VerifiedCache | None = None,
        *,
        platform: PlatformTokens | None = None,
        provision: bool = False,
    ) -> None:
        self._store = store
        self._codec = codec
        self._clock = clock
        self._cache = cache if cache is not None else VerifiedCache()
        self._platform = platform  # the host platform's tokens (RS256/ES256), when configured
        self._provision = provision

    @property
    def cache(self) -> VerifiedCache:
        return self._cache

    async def from_jwt(self, token: str) -> Principal:
        now = self._clock.now()
        cached = self._cache.get("j:" + token, now)
        if cached is not None:
            return cached
        try:
            header = self._platform_header(token)
            if header is None:
                claims = self._codec.verify(token)
                user_id, name, expires_at = claims.user_id, None, claims.expires_at
            else:
                assert self._platform is not None
                found = await self._platform.verify(token, header)
                user_id, name, expires_at = found.user_id, found.name, found.expires_at
        except TokenError as exc:
            raise AuthError(exc.reason, "invalid or expired token") from None
        user = await self._store.get_user(user_id)
        if user is None and name is not None and self._provision:
            user = await self._provisioned(user_id, name)
        if user is None:
            raise AuthError("unknown_user", "invalid or expired token")
        if not user.is_active:
            raise AuthError("inactive_user", "account is deactivated")
        principal = Principal(SubjectRef(SubjectKind.USER, user.id), user.username, user.role)
        self._cache.put("j:" + token, principal, now, expires_at)
        return principal

    def _platform_header(self, token: str) -> dict[str, Any] | None:
        """The header of a token the platform signed (RS256/ES256); None for presence's own
        HS256 tokens and for anything when no platform is configured (the own codec refuses
        what is not its own)."""
        if self._platform is None or len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return None
        return header if header.get("alg") in PLATFORM_ALGORITHMS else None

    async def _provisioned(self, user_id: str, name: str) -> UserRecord | None:
        """The platform's user, created on its first valid token (no password: it logs in at
        the platform). A concurrent first request of the same user finds it made."""
        try:
            return await self._store.create_user(
                username=name,
                email=placeholder_email(user_id),
                password_hash="",
                role=Role.USER,
                now=from_epoch(self._clock.now()),
                user_id=user_id,
            )
        except DuplicateError:
            return await self._store.get_user(user_id)

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
