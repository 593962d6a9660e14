"""Who may hold a socket, and what it hears first.

One path for both ways in (SPEC §6.3): credentials in the handshake (``auth.token``,
``auth.sessionToken`` or the ``Authorization`` / ``X-Session-Token`` headers) or in an
``authenticate`` event within the deadline. Then the same steps: the attempt limits, the
credentials, the rooms ``user:<id>`` and ``conversation:<cid>``, the cluster registry, and the
greeting (``authenticated``, ``presence:snapshot``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from presence.addresses import client_address
from presence.auth.attempts import Attempt, AttemptLimiter
from presence.auth.authenticator import Authenticator, AuthError
from presence.auth.tokens import claimed_subject
from presence.config import Network
from presence.conversations import Conversations
from presence.domain import Principal
from presence.metrics import Metrics
from presence.realtime import payloads
from presence.realtime.broadcast import conversation_room, user_room
from presence.realtime.limits import TokenBucket
from presence.realtime.protocol import BoundedServer
from presence.realtime.refusals import UNAVAILABLE, count_authentication, refusal_for
from presence.service import PresenceService
from presence.store.base import StoreError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LocalConnection:
    """A socket of this worker, from its handshake to its close."""

    address: str
    principal: Principal | None = None
    registered: bool = False  # recorded in the cluster registry
    bucket: TokenBucket = field(default_factory=TokenBucket)
    deadline: asyncio.Task[None] | None = None


class Admission:
    def __init__(
        self,
        *,
        sio: BoundedServer,
        metrics: Metrics,
        authenticator: Authenticator,
        attempts: AttemptLimiter,
        conversations: Conversations,
        presence: PresenceService,
        trusted_proxies: tuple[Network, ...],
    ) -> None:
        self._sio = sio
        self._metrics = metrics
        self._auth = authenticator
        self._attempts = attempts
        self._conversations = conversations
        self._presence = presence
        self._trusted_proxies = trusted_proxies

    def connection(self, environ: dict[str, Any]) -> LocalConnection:
        return LocalConnection(
            address=client_address(
                _peer(environ), environ.get("HTTP_X_FORWARDED_FOR"), self._trusted_proxies
            )
        )

    @staticmethod
    def handshake_credentials(auth: Any, environ: dict[str, Any]) -> payloads.Credentials | None:
        """The handshake's ``auth`` object, else its headers; None when it brings none."""
        return payloads.credentials_from(auth) or _header_credentials(environ)

    async def authenticate(self, credentials: payloads.Credentials, address: str) -> Principal:
        """The address is checked before the credentials; the account a refused token claims
        only after the refusal: a valid token is never a guess, so forged tokens naming
        someone cannot lock that person out."""
        await self._attempts.check(Attempt(address=address))
        try:
            if credentials.token is not None:
                return await self._auth.from_jwt(credentials.token)
            assert credentials.session_token is not None
            return await self._auth.from_session_token(credentials.session_token)
        except AuthError:
            # Only a refused token is read for the account it claims (unverified).
            claimed = None if credentials.token is None else claimed_subject(credentials.token)
            account = None if claimed is None else f"user:{claimed}"
            try:
                if account is not None:
                    await self._attempts.check(Attempt(account=account))
            finally:
                await self._attempts.failed(Attempt(address, account))
            raise

    async def admit_and_greet(
        self,
        sid: str,
        connection: LocalConnection,
        principal: Principal,
        still_open: Callable[[str], bool],
    ) -> None:
        try:
            await self._admit(sid, connection, principal, still_open)
        except (RedisError, StoreError) as exc:
            refusal = refusal_for(exc)
            assert refusal.outcome == UNAVAILABLE
            count_authentication(self._metrics, refusal)
            await self._sio.error(sid, refusal.code, refusal.message)
            await self._sio.disconnect(sid)
            return
        await self._greet(sid, principal)

    async def _admit(
        self,
        sid: str,
        connection: LocalConnection,
        principal: Principal,
        still_open: Callable[[str], bool],
    ) -> None:
        """Rooms first, then the registry: whatever changes after this is heard, whatever
        changed before is in the snapshot that follows."""
        connection.principal = principal
        await self._sio.enter_room(sid, user_room(principal.subject.id))
        for conversation in await self._conversations.conversations_of(principal.subject):
            await self._sio.enter_room(sid, conversation_room(conversation.id))
        await self._presence.connect(principal.subject, sid)
        connection.registered = True
        if not still_open(sid):  # closed while we were registering it
            await self._presence.disconnect(principal.subject, sid)

    async def _greet(self, sid: str, principal: Principal) -> None:
        user = {
            "id": principal.subject.id,
            "username": principal.name,
            "isAnonymous": principal.subject.is_anonymous,
        }
        await self._sio.reply(sid, "authenticated", {"success": True, "user": user})
        try:
            shared = await self._conversations.shared_with(principal)
            records = await self._presence.records(
                sorted(shared, key=lambda s: s.member), viewer=principal.subject
            )
        except (RedisError, StoreError):
            log.warning("no snapshot for a new connection", extra={"sid": sid})
            return
        await self._sio.reply(sid, "presence:snapshot", {"users": [r.to_json() for r in records]})


def _header_credentials(environ: dict[str, Any]) -> payloads.Credentials | None:
    bearer = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = bearer.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        # Not validated here: whatever comes, the authenticator refuses what is not a token.
        return payloads.Credentials.model_construct(
            token=token.strip()[: payloads.MAX_TOKEN_CHARS + 1], session_token=None
        )
    session = environ.get("HTTP_X_SESSION_TOKEN", "").strip()
    if session:
        return payloads.Credentials.model_construct(
            token=None, session_token=session[: payloads.MAX_TOKEN_CHARS + 1]
        )
    return None


def _peer(environ: dict[str, Any]) -> str:
    request = environ.get("aiohttp.request")
    remote = getattr(request, "remote", None)
    return str(remote or environ.get("REMOTE_ADDR") or "unknown")
