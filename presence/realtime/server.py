"""The Socket.IO server: handshake and late authentication, rooms, inbound events, bounds.

Protocol (SPEC §6.3): credentials in the handshake (``auth.token``, ``auth.sessionToken`` or the
``Authorization`` / ``X-Session-Token`` headers), or an ``authenticate`` event within the
deadline. Then ``authenticated``, ``presence:snapshot``, and the rooms ``user:<id>`` and
``conversation:<cid>``. Refusals are ``connect_error`` / ``error`` with ``{code, message}``.

Bounds: inbound messages are at most :data:`MAX_MESSAGE_BYTES`, binary attachments are refused
(the socket is dropped), each socket has an event budget (:mod:`presence.realtime.limits`), and
a socket whose outbound queue grows past :data:`MAX_QUEUED_PACKETS` (a consumer that stopped
reading) is dropped, so no client can grow a worker's memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence.addresses import client_address
from presence.auth.attempts import Attempt, AttemptLimiter
from presence.auth.authenticator import Authenticator, AuthError
from presence.auth.tokens import claimed_subject
from presence.clock import Clock
from presence.config import Settings
from presence.conversations import Conversations
from presence.domain import DomainError, Principal, TooManyAttempts, from_epoch, iso
from presence.keys import Keys
from presence.metrics import Metrics
from presence.realtime import payloads
from presence.realtime.broadcast import Broadcaster, conversation_room, user_room
from presence.realtime.limits import TokenBucket
from presence.realtime.manager import ProbedRedisManager
from presence.realtime.transport import without_compression
from presence.service import PresenceService
from presence.store.base import StoreError

log = logging.getLogger(__name__)

# Every event we accept is a few hundred bytes; Engine.IO's default is 1 MB.
MAX_MESSAGE_BYTES = 16 * 1024
# Packets waiting for one socket; a live client drains them in milliseconds.
MAX_QUEUED_PACKETS = 512
SLOW_CONSUMER_CHECK_S = 1.0


class Refused(socketio.exceptions.ConnectionRefusedError):  # type: ignore[misc]
    """A refused handshake; the client's ``connect_error`` carries ``{code, message}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        # socket.io-client exposes ``message`` and ``data``; python clients get the whole dict.
        self.error_args = {
            "message": message,
            "code": code,
            "data": {"code": code, "message": message},
        }


# How long a shutdown waits for the message-queue listener to stop.
STOP_WAIT_S = 2.0


# What python-socketio raises on a packet it cannot decode or dispatch: bad JSON, JSON nested
# past the recursion limit, an event whose data is not a list (``42null``), an empty event.
# Handlers themselves run as tasks, so their errors never arrive here.
_MALFORMED = (ValueError, RecursionError, TypeError, IndexError, KeyError, AttributeError)


class BoundedServer(socketio.AsyncServer):  # type: ignore[misc]
    """Refuses binary attachments and malformed packets by dropping the socket: one socket
    declaring many attachments could otherwise grow a worker by hundreds of MiB."""

    on_bad_packet: Callable[[str], None] = staticmethod(lambda reason: None)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if isinstance(data, bytes) or (isinstance(data, str) and data[:1] in ("5", "6")):
            self.on_bad_packet("binary")
            await self.eio.disconnect(eio_sid)
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except _MALFORMED:
            self.on_bad_packet("malformed")
            await self.eio.disconnect(eio_sid)

    async def _handle_event(self, eio_sid: str, namespace: str, id: Any, data: Any) -> None:
        # An event is ``[name, ...args]`` with a string name; anything else (``42null``, a list
        # as the name) would fail later inside a handler task, as an unretrieved exception.
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            self.on_bad_packet("malformed")
            await self.eio.disconnect(eio_sid)
            return
        await super()._handle_event(eio_sid, namespace, id, data)


@dataclass(slots=True)
class LocalConnection:
    address: str
    principal: Principal | None = None
    registered: bool = False  # recorded in the cluster registry
    bucket: TokenBucket = field(default_factory=TokenBucket)
    deadline: asyncio.Task[None] | None = None


EventHandler = Callable[[str, Principal, tuple[Any, ...]], Awaitable[None]]


class RealtimeServer:
    def __init__(
        self,
        *,
        settings: Settings,
        clock: Clock,
        metrics: Metrics,
        keys: Keys,
        redis: Redis,
        authenticator: Authenticator,
        attempts: AttemptLimiter,
        conversations: Conversations,
        presence: PresenceService,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._keys = keys
        self._redis = redis
        self._auth = authenticator
        self._attempts = attempts
        self._conversations = conversations
        self._presence = presence
        sio_logger = _quiet_logger("presence.socketio", settings.log_level)
        self.manager: ProbedRedisManager | None = None
        if settings.redis_url is not None:
            self.manager = ProbedRedisManager(
                settings.redis_url, keys.socketio_channel, sio_logger, metrics
            )
        origins: str | list[str] = (
            "*" if "*" in settings.cors_origins else list(settings.cors_origins)
        )
        self.sio = BoundedServer(
            async_mode="aiohttp",
            client_manager=self.manager,
            cors_allowed_origins=origins,
            ping_interval=settings.ping_interval_s,
            ping_timeout=settings.ping_timeout_s,
            max_http_buffer_size=MAX_MESSAGE_BYTES,
            logger=sio_logger,
            engineio_logger=_quiet_logger("presence.engineio", settings.log_level),
        )
        self.sio.on_bad_packet = self._bad_packet
        without_compression(self.sio.eio)
        self.sio.eio.on_bad_frame = lambda: self._bad_packet("engineio")
        self._local: dict[str, LocalConnection] = {}
        self._admitting = 0
        self._broadcaster = Broadcaster(self.sio, conversations, presence, metrics)
        presence.add_listener(self._broadcaster.on_change)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_event)
        self._events: dict[str, EventHandler] = {
            "presence:set": self._presence_set,
            "conversation:join": self._conversation_join,
            "heartbeat": self._heartbeat,
        }

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app, socketio_path="socket.io")

    def start(self) -> None:
        """Start listening to the message queue now, not at the first connection: a worker
        must hear other workers' events (and its own probe) from the moment it is up."""
        if not self.sio.manager_initialized:
            self.sio.manager_initialized = True
            self.sio.manager.initialize()

    async def stop(self) -> None:
        thread = getattr(self.sio.manager, "thread", None)
        if isinstance(thread, asyncio.Task):
            thread.cancel()
            # Bounded: a listener that swallows its cancellation must not hang the shutdown.
            await asyncio.wait({thread}, timeout=STOP_WAIT_S)
        pubsub = getattr(self.sio.manager, "pubsub", None)
        redis = getattr(self.sio.manager, "redis", None)
        with contextlib.suppress(Exception):
            if pubsub is not None:
                await pubsub.aclose()
            if redis is not None:
                await redis.aclose()

    @property
    def connection_count(self) -> int:
        return len(self._local)

    def pubsub_deaf(self) -> bool:
        return self.manager is not None and self.manager.is_deaf()

    # -- connection life cycle ---------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        # Handshakes still checking credentials hold a slot too: a burst of concurrent connects
        # must not all pass the check before any of them is counted.
        if len(self._local) + self._admitting >= self._settings.max_connections:
            self._metrics.socket_refusals.labels(reason="server_full").inc()
            raise Refused("server_full", "this worker is full, try again")
        self._admitting += 1
        try:
            await self._accept(sid, environ, auth)
        finally:
            self._admitting -= 1

    async def _accept(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        try:
            credentials = payloads.credentials_from(auth) or _header_credentials(environ)
        except payloads.InvalidPayload as exc:
            self._metrics.auth_failures.labels(reason=exc.code).inc()
            raise Refused(exc.code, exc.message) from None
        connection = LocalConnection(
            address=client_address(
                _peer(environ),
                environ.get("HTTP_X_FORWARDED_FOR"),
                self._settings.trusted_proxies,
            )
        )
        if credentials is None:
            self._local[sid] = connection
            connection.deadline = asyncio.create_task(self._expire_unauthenticated(sid))
            self._metrics.connections.set(len(self._local))
            return
        try:
            principal = await self._authenticate(credentials, connection.address)
        except TooManyAttempts as exc:
            self._metrics.socket_refusals.labels(reason="auth_rate_limited").inc()
            raise Refused(exc.code, exc.message) from None
        except AuthError as exc:
            self._metrics.auth_failures.labels(reason=exc.reason).inc()
            raise Refused(exc.reason, exc.message) from None
        except RedisError:
            self._metrics.socket_refusals.labels(reason="unavailable").inc()
            raise Refused("unavailable", "presence is unavailable, try again") from None
        connection.principal = principal
        self._local[sid] = connection
        self._metrics.connections.set(len(self._local))
        self.sio.start_background_task(self._welcome, sid, connection, principal)

    async def _welcome(self, sid: str, connection: LocalConnection, principal: Principal) -> None:
        # Runs once the CONNECT packet is out: events reach the socket only after it.
        await asyncio.sleep(0)
        await self._admit_and_greet(sid, connection, principal)

    async def _authenticate(self, credentials: payloads.Credentials, address: str) -> Principal:
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

    async def _admit_and_greet(
        self, sid: str, connection: LocalConnection, principal: Principal
    ) -> None:
        try:
            await self._admit(sid, connection, principal)
        except (RedisError, StoreError):
            self._metrics.socket_refusals.labels(reason="unavailable").inc()
            await self._error(sid, "unavailable", "presence is unavailable, try again")
            await self.sio.disconnect(sid)
            return
        await self._greet(sid, principal)

    async def _admit(self, sid: str, connection: LocalConnection, principal: Principal) -> None:
        """Rooms first, then the registry: whatever changes after this is heard, whatever
        changed before is in the snapshot that follows."""
        connection.principal = principal
        await self.sio.enter_room(sid, user_room(principal.subject.id))
        for conversation in await self._conversations.conversations_of(principal.subject):
            await self.sio.enter_room(sid, conversation_room(conversation.id))
        await self._presence.connect(principal.subject, sid)
        connection.registered = True
        if sid not in self._local:  # closed while we were registering it
            await self._presence.disconnect(principal.subject, sid)

    async def _greet(self, sid: str, principal: Principal) -> None:
        user = {
            "id": principal.subject.id,
            "username": principal.name,
            "isAnonymous": principal.subject.is_anonymous,
        }
        await self._reply(sid, "authenticated", {"success": True, "user": user})
        try:
            shared = await self._conversations.shared_with(principal)
            records = await self._presence.records(
                sorted(shared, key=lambda s: s.member), viewer=principal.subject
            )
        except (RedisError, StoreError):
            log.warning("no snapshot for a new connection", extra={"sid": sid})
            return
        await self._reply(sid, "presence:snapshot", {"users": [r.to_json() for r in records]})

    async def _expire_unauthenticated(self, sid: str) -> None:
        await asyncio.sleep(self._settings.auth_deadline_s)
        connection = self._local.get(sid)
        if connection is not None and connection.principal is None:
            self._metrics.socket_refusals.labels(reason="auth_deadline").inc()
            await self._error(sid, "auth_timeout", "authenticate within the deadline")
            await self.sio.disconnect(sid)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        connection = self._local.pop(sid, None)
        self._metrics.connections.set(len(self._local))
        if connection is None:
            return
        if connection.deadline is not None:
            connection.deadline.cancel()
        if connection.principal is not None and connection.registered:
            await self._presence.disconnect(connection.principal.subject, sid)

    # -- inbound events ------------------------------------------------------------------------

    async def _on_event(self, event: str, sid: str, *args: Any) -> None:
        connection = self._local.get(sid)
        if connection is None:
            return
        if not connection.bucket.allow(time.monotonic()):
            self._metrics.socket_events.labels(event="*", outcome="rate_limited").inc()
            if connection.bucket.hostile:
                self._metrics.socket_refusals.labels(reason="flood").inc()
                await self.sio.disconnect(sid)
            elif connection.bucket.refused_in_a_row == 1:
                await self._error(sid, "rate_limited", "too many events, slow down")
            return
        if event == "authenticate":
            await self._late_authenticate(sid, connection, args)
            return
        handler = self._events.get(event)
        if handler is None:
            self._metrics.socket_events.labels(event="unknown", outcome="refused").inc()
            await self._error(sid, "unknown_event", "unknown event")
            return
        if connection.principal is None:
            self._metrics.socket_events.labels(event=event, outcome="unauthenticated").inc()
            await self._error(sid, "auth_required", "authenticate first")
            return
        try:
            await handler(sid, connection.principal, args)
        except payloads.InvalidPayload as exc:
            self._metrics.socket_events.labels(event=event, outcome="invalid").inc()
            await self._error(sid, exc.code, exc.message)
            return
        except DomainError as exc:
            self._metrics.socket_events.labels(event=event, outcome="refused").inc()
            await self._error(sid, exc.code, exc.message)
            return
        except (RedisError, StoreError):
            self._metrics.socket_events.labels(event=event, outcome="unavailable").inc()
            await self._error(sid, "unavailable", "presence is unavailable, try again")
            return
        self._metrics.socket_events.labels(event=event, outcome="ok").inc()

    async def _late_authenticate(
        self, sid: str, connection: LocalConnection, args: tuple[Any, ...]
    ) -> None:
        if connection.principal is not None:
            await self._error(sid, "already_authenticated", "this socket is authenticated")
            return
        try:
            principal = await self._authenticate(payloads.authenticate(args), connection.address)
        except TooManyAttempts:
            self._metrics.socket_refusals.labels(reason="auth_rate_limited").inc()
            await self._error(sid, "rate_limited", "too many authentication attempts")
            await self.sio.disconnect(sid)
            return
        except RedisError:
            await self._error(sid, "unavailable", "presence is unavailable, try again")
            return
        except payloads.InvalidPayload as exc:
            self._metrics.auth_failures.labels(reason=exc.code).inc()
            await self._error(sid, exc.code, exc.message)
            return
        except AuthError as exc:
            self._metrics.auth_failures.labels(reason=exc.reason).inc()
            await self._error(sid, exc.reason, exc.message)
            return
        if connection.deadline is not None:
            connection.deadline.cancel()
        await self._admit_and_greet(sid, connection, principal)

    async def _presence_set(self, sid: str, principal: Principal, args: tuple[Any, ...]) -> None:
        status = payloads.presence_set(args)
        await self._presence.activity(principal.subject)
        await self._presence.set_manual_status(principal.subject, status)

    async def _conversation_join(
        self, sid: str, principal: Principal, args: tuple[Any, ...]
    ) -> None:
        conversation_id = payloads.conversation_join(args)
        await self._presence.activity(principal.subject)
        conversation = await self._conversations.visible_to(principal, conversation_id)
        await self.sio.enter_room(sid, conversation_room(conversation.id))
        members = await self._conversations.members(conversation)
        records = await self._presence.records(members, viewer=principal.subject)
        await self._reply(
            sid,
            "presence:state",
            {"conversationId": conversation.id, "users": [r.to_json() for r in records]},
        )

    async def _heartbeat(self, sid: str, principal: Principal, args: tuple[Any, ...]) -> None:
        payloads.heartbeat(args)
        await self._presence.activity(principal.subject)
        await self._reply(sid, "heartbeat:ack", {"serverTime": iso_now(self._clock)})

    async def _error(self, sid: str, code: str, message: str) -> None:
        await self._reply(sid, "error", {"code": code, "message": message})

    async def _reply(self, sid: str, event: str, data: dict[str, Any]) -> None:
        """To one socket of this worker: delivered here, never published for other workers
        to decode and drop."""
        await self.sio.emit(event, data, to=sid, ignore_queue=True)

    def _bad_packet(self, reason: str) -> None:
        self._metrics.socket_refusals.labels(reason=f"bad_packet_{reason}").inc()

    # -- background work -----------------------------------------------------------------------

    async def run_transport_activity(self) -> None:
        """Live connections are activity: a socket the transport heartbeat keeps alive marks
        its subject active once per ping interval (through the throttled tracker), so a
        connected subject is never swept offline."""
        while True:
            await asyncio.sleep(self._settings.ping_interval_s)
            subjects = {c.principal.subject for c in self._local.values() if c.principal}
            for subject in subjects:
                try:
                    await self._presence.activity(subject)
                except Exception:
                    log.exception("transport activity failed")

    async def run_slow_consumer_check(self) -> None:
        while True:
            await asyncio.sleep(SLOW_CONSUMER_CHECK_S)
            for sid in list(self._local):
                eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
                socket = self.sio.eio.sockets.get(eio_sid) if eio_sid else None
                if socket is not None and socket.queue.qsize() > MAX_QUEUED_PACKETS:
                    self._metrics.socket_refusals.labels(reason="slow_consumer").inc()
                    await self.sio.disconnect(sid)

    async def reassert(self) -> None:
        """Redis forgot this worker (restart, flush, or a stall taken for death): register its
        live connections again so none of them is swept or shown offline."""
        live = [
            (c.principal.subject, sid)
            for sid, c in list(self._local.items())
            if c.principal is not None and c.registered
        ]
        await self._presence.reassert(live)

    async def close_all(self) -> None:
        """Graceful shutdown: close every socket so clients reconnect elsewhere within the
        grace period (their subjects then never look offline)."""
        for sid in list(self._local):
            with contextlib.suppress(Exception):
                await self.sio.disconnect(sid)


def iso_now(clock: Clock) -> str | None:
    return iso(from_epoch(clock.now()))


def _header_credentials(environ: dict[str, Any]) -> payloads.Credentials | None:
    bearer = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = bearer.strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return payloads.Credentials(token=token.strip()[: payloads.MAX_TOKEN_CHARS + 1])
    session = environ.get("HTTP_X_SESSION_TOKEN", "").strip()
    if session:
        return payloads.Credentials(session_token=session[: payloads.MAX_TOKEN_CHARS + 1])
    return None


def _peer(environ: dict[str, Any]) -> str:
    request = environ.get("aiohttp.request")
    remote = getattr(request, "remote", None)
    return str(remote or environ.get("REMOTE_ADDR") or "unknown")


def _quiet_logger(name: str, level: str) -> logging.Logger:
    # Engine.IO logs every packet at INFO; only warnings and errors are worth a line.
    logger = logging.getLogger(name)
    logger.setLevel(max(logging.WARNING, logging.getLevelName(level)))
    return logger
