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
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from presence.addresses import client_address
from presence.auth.attempts import Attempt, AttemptLimiter
from presence.auth.authenticator import Authenticator, AuthError
from presence.auth.tokens import claimed_subject
from presence.choices import Choices
from presence.config import Network
from presence.conversations import Conversations
from presence.domain import LastSeenPrivacy, Principal
from presence.metrics import Metrics
from presence.realtime import payloads
from presence.realtime.broadcast import conversation_room, user_room
from presence.realtime.limits import TokenBucket
from presence.realtime.protocol import BoundedServer
from presence.realtime.refusals import UNAVAILABLE, count_authentication, refusal_for
from presence.service import PresenceService
from presence.store.base import ConversationRecord, StoreError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LocalConnection:
    """A socket of this worker, from its handshake to its close."""

    address: str
    principal: Principal | None = None
    registered: bool = False  # recorded in the cluster registry
    closed: bool = False
    bucket: TokenBucket = field(default_factory=TokenBucket)
    deadline: asyncio.Task[None] | None = None
    # Its user does not share its own exact last seen, so it sees others' approximately at
    # best (until its snapshot says otherwise: never more than it may see).
    reserved: bool = True


@dataclass(kw_only=True, eq=False)
class Admission:
    sio: BoundedServer
    metrics: Metrics
    authenticator: Authenticator
    attempts: AttemptLimiter
    conversations: Conversations
    presence: PresenceService
    choices: Choices
    trusted_proxies: tuple[Network, ...]

    def connection(self, environ: dict[str, Any]) -> LocalConnection:
        return LocalConnection(
            address=client_address(
                _peer(environ), environ.get("HTTP_X_FORWARDED_FOR"), self.trusted_proxies
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
        await self.attempts.check(Attempt(address=address))
        try:
            if credentials.token is not None:
                return await self.authenticator.from_jwt(credentials.token)
            assert credentials.session_token is not None
            return await self.authenticator.from_session_token(credentials.session_token)
        except AuthError:
            # Only a refused token is read for the account it claims (unverified).
            claimed = None if credentials.token is None else claimed_subject(credentials.token)
            account = None if claimed is None else f"user:{claimed}"
            try:
                if account is not None:
                    await self.attempts.check(Attempt(account=account))
            finally:
                await self.attempts.failed(Attempt(address, account))
            raise

    async def admit_and_greet(
        self, sid: str, connection: LocalConnection, principal: Principal
    ) -> None:
        try:
            conversations = await self._admit(sid, connection, principal)
        except (RedisError, StoreError) as exc:
            refusal = refusal_for(exc)
            assert refusal.outcome == UNAVAILABLE
            count_authentication(self.metrics, refusal)
            await self.sio.error(sid, refusal.code, refusal.message)
            await self.sio.disconnect(sid)
            return
        await self._greet(sid, connection, principal, conversations)

    async def _admit(
        self, sid: str, connection: LocalConnection, principal: Principal
    ) -> list[ConversationRecord]:
        """Rooms first, then the registry: whatever changes after this is heard, whatever
        changed before is in the snapshot that follows. Returns the conversations entered."""
        connection.principal = principal
        await self.sio.enter_room(sid, user_room(principal.subject.id))
        conversations = await self.conversations.conversations_of(principal.subject)
        for conversation in conversations:
            await self.sio.enter_room(sid, conversation_room(conversation.id))
        # A new connection is the person arriving: not away, whatever its other tabs were.
        await self.choices.record_input(principal.subject, always=True)
        await self.presence.connect(principal.subject, sid)
        connection.registered = True
        if connection.closed:  # closed while we were registering it
            await self.presence.disconnect(principal.subject, sid)
        return conversations

    async def _greet(
        self,
        sid: str,
        connection: LocalConnection,
        principal: Principal,
        conversations: list[ConversationRecord],
    ) -> None:
        user = {
            "id": principal.subject.id,
            "username": principal.name,
            "isAnonymous": principal.subject.is_anonymous,
        }
        await self.sio.reply(sid, "authenticated", {"success": True, "user": user})
        try:
            users = await self.snapshot(principal, conversations, connection)
        except (RedisError, StoreError):
            log.warning("no snapshot for a new connection", extra={"sid": sid})
            return
        await self.sio.reply(sid, "presence:snapshot", {"users": users})

    async def snapshot(
        self,
        principal: Principal,
        conversations: list[ConversationRecord] | None = None,
        connection: LocalConnection | None = None,
    ) -> list[dict[str, object]]:
        """Everyone the principal shares a conversation with, and itself, as it sees them
        (and, on the way, whether the connection's user shares its exact last seen)."""
        shared = await self.conversations.shared_with(principal, conversations)
        records, privacy = await self.presence.viewed_by(
            sorted(shared, key=lambda s: s.member), principal.subject
        )
        if connection is not None:
            connection.reserved = privacy is not LastSeenPrivacy.EXACT
        return [r.to_json() for r in records]


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
