"""The Socket.IO server: wires admission, the event handlers and the broadcaster to
python-socketio, and runs the per-worker loops that watch its sockets.

Bounds: inbound messages are at most :data:`~presence.realtime.protocol.MAX_MESSAGE_BYTES`,
binary attachments are refused (the socket is dropped), each socket has an event budget
(:mod:`presence.realtime.limits`), and a socket whose outbound queue grows past
:data:`MAX_QUEUED_PACKETS` (a consumer that stopped reading) is dropped, so no client can grow a
worker's memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from presence.auth.attempts import AttemptLimiter
from presence.auth.authenticator import Authenticator
from presence.choices import Choices
from presence.clock import Clock
from presence.config import Settings
from presence.conversations import Conversations
from presence.domain import Principal
from presence.keys import Keys
from presence.metrics import Metrics
from presence.realtime import payloads
from presence.realtime.admission import Admission, LocalConnection
from presence.realtime.broadcast import Broadcaster, conversation_room
from presence.realtime.delivery import EXACT_VIEW, RESERVED_VIEW, DirectDelivery
from presence.realtime.handlers import EventHandlers
from presence.realtime.manager import BroadcastRedisManager
from presence.realtime.membership import LiveDirectory
from presence.realtime.protocol import (
    MAX_MESSAGE_BYTES,
    BoundedServer,
    Refused,
    TextPacket,
    quiet_logger,
)
from presence.realtime.queue import ProbedQueue
from presence.realtime.refusals import (
    KNOWN,
    Refusal,
    count_authentication,
    count_event,
    refusal_for,
)
from presence.realtime.resync import Resync
from presence.realtime.routed import RoutedRedisManager
from presence.realtime.transport import without_compression
from presence.rooms import TELL_POLL_S, LargeRooms
from presence.routes import RoomRoutes
from presence.service import PresenceService

log = logging.getLogger(__name__)

# Packets waiting for one socket; a live client drains them in milliseconds.
MAX_QUEUED_PACKETS = 512
SLOW_CONSUMER_CHECK_S = 1.0


class RealtimeServer:
    def __init__(
        self,
        *,
        settings: Settings,
        clock: Clock,
        metrics: Metrics,
        keys: Keys,
        authenticator: Authenticator,
        attempts: AttemptLimiter,
        conversations: Conversations,
        presence: PresenceService,
        choices: Choices,
        rooms: LargeRooms,
        routes: RoomRoutes,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._presence = presence
        self._conversations = conversations
        self._rooms = rooms
        sio_logger = quiet_logger("presence.socketio", settings.log_level)
        self.manager: ProbedQueue | None = None
        if settings.redis is not None and settings.message_queue == "routed":
            self.manager = RoutedRedisManager(settings.redis, routes, sio_logger, metrics)
        elif settings.redis is not None:
            self.manager = BroadcastRedisManager(
                settings.redis, keys.socketio_channel, settings.worker_id, sio_logger, metrics
            )
        origins: str | list[str] = (
            "*" if "*" in settings.cors_origins else list(settings.cors_origins)
        )
        # One worker without Redis delivers through the same local delivery (with its views).
        delivery = self.manager or DirectDelivery()
        delivery.view_of = self._view_of
        self.sio = BoundedServer(
            async_mode="aiohttp",
            client_manager=delivery,
            serializer=TextPacket,
            cors_allowed_origins=origins,
            ping_interval=settings.ping_interval_s,
            ping_timeout=settings.ping_timeout_s,
            max_http_buffer_size=MAX_MESSAGE_BYTES,
            logger=sio_logger,
            engineio_logger=quiet_logger("presence.engineio", settings.log_level),
        )
        self.sio.on_bad_packet = self._bad_packet
        without_compression(self.sio.eio)
        self.sio.eio.on_bad_frame = lambda: self._bad_packet("engineio")
        self._local: dict[str, LocalConnection] = {}
        self._admitting = 0
        self._admission = Admission(
            sio=self.sio,
            metrics=metrics,
            authenticator=authenticator,
            attempts=attempts,
            conversations=conversations,
            presence=presence,
            choices=choices,
            trusted_proxies=settings.trusted_proxies,
        )
        self._resync = Resync(self.sio, self._admission, self._live_sockets, metrics)
        if self.manager is not None:
            self.manager.on_heard_again = self._resync.run
        self._handlers = EventHandlers(
            sio=self.sio,
            clock=clock,
            conversations=conversations,
            presence=presence,
            choices=choices,
            rooms=rooms,
        )
        self._broadcaster = Broadcaster(
            sio=self.sio,
            conversations=conversations,
            presence=presence,
            rooms=rooms,
            metrics=metrics,
        )
        presence.add_listener(self._broadcaster.on_change)
        self.live_directory = LiveDirectory(
            self.sio, self.manager, authenticator, conversations, presence, self._set_reserved
        )
        choices.add_privacy_listener(self.live_directory.on_privacy)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_event)

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app, socketio_path="socket.io")

    def start(self) -> None:
        """Start listening to the message queue now, not at the first connection: a worker
        must hear other workers' events (and its own probe) from the moment it is up."""
        if not self.sio.manager_initialized:
            self.sio.manager_initialized = True
            self.sio.manager.initialize()

    async def stop(self) -> None:
        if self.manager is not None:
            await self.manager.close()

    @property
    def connection_count(self) -> int:
        return len(self._local)

    @property
    def events(self) -> set[str]:
        """Every event a client may send."""
        return {"authenticate", *self._handlers.table}

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
            await self._handshake(sid, environ, auth)
        finally:
            self._admitting -= 1

    async def _handshake(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        connection = self._admission.connection(environ)
        try:
            credentials = self._admission.handshake_credentials(auth, environ)
            principal = (
                None
                if credentials is None
                else await self._admission.authenticate(credentials, connection.address)
            )
        except KNOWN as exc:
            refusal = refusal_for(exc)
            count_authentication(self._metrics, refusal)
            raise Refused(refusal.code, refusal.message) from None
        connection.principal = principal
        self._local[sid] = connection
        self._metrics.connections.set(len(self._local))
        if principal is None:
            connection.deadline = asyncio.create_task(self._expire_unauthenticated(sid))
            return
        self.sio.start_background_task(self._welcome, sid, connection, principal)

    async def _welcome(self, sid: str, connection: LocalConnection, principal: Principal) -> None:
        # Runs once the CONNECT packet is out: events reach the socket only after it.
        await asyncio.sleep(0)
        await self._admission.admit_and_greet(sid, connection, principal)

    async def _late_authenticate(
        self, sid: str, connection: LocalConnection, args: tuple[Any, ...]
    ) -> None:
        if connection.principal is not None:
            await self.sio.error(sid, "already_authenticated", "this socket is authenticated")
            return
        try:
            credentials = payloads.authenticate(args)
            principal = await self._admission.authenticate(credentials, connection.address)
        except KNOWN as exc:
            refusal = refusal_for(exc)
            count_authentication(self._metrics, refusal)
            await self._refuse(sid, refusal)
            return
        if connection.deadline is not None:
            connection.deadline.cancel()
        await self._admission.admit_and_greet(sid, connection, principal)

    async def _expire_unauthenticated(self, sid: str) -> None:
        await asyncio.sleep(self._settings.auth_deadline_s)
        connection = self._local.get(sid)
        if connection is not None and connection.principal is None:
            self._metrics.socket_refusals.labels(reason="auth_deadline").inc()
            await self.sio.error(sid, "auth_timeout", "authenticate within the deadline")
            await self.sio.disconnect(sid)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        connection = self._local.pop(sid, None)
        self._metrics.connections.set(len(self._local))
        if connection is None:
            return
        connection.closed = True
        if connection.deadline is not None:
            connection.deadline.cancel()
        if connection.principal is not None and connection.registered:
            await self._presence.disconnect(connection.principal.subject, sid)

    # -- inbound events ------------------------------------------------------------------------

    async def _on_event(self, event: str, sid: str, *args: Any) -> None:
        connection = self._local.get(sid)
        if connection is None:
            return
        if not connection.bucket.allow(self._clock.monotonic()):
            self._metrics.socket_events.labels(event="*", outcome="rate_limited").inc()
            if connection.bucket.hostile:
                self._metrics.socket_refusals.labels(reason="flood").inc()
                await self.sio.disconnect(sid)
            elif connection.bucket.refused_in_a_row == 1:
                await self.sio.error(sid, "rate_limited", "too many events, slow down")
            return
        if event == "authenticate":
            await self._late_authenticate(sid, connection, args)
            return
        if event not in self._handlers.table:
            self._metrics.socket_events.labels(event="unknown", outcome="refused").inc()
            await self.sio.error(sid, "unknown_event", "unknown event")
            return
        if connection.principal is None:
            self._metrics.socket_events.labels(event=event, outcome="unauthenticated").inc()
            await self.sio.error(sid, "auth_required", "authenticate first")
            return
        try:
            await self._handlers.handle(event, sid, connection.principal, args)
        except KNOWN as exc:
            refusal = refusal_for(exc)
            count_event(self._metrics, event, refusal)
            await self._refuse(sid, refusal)
            return
        self._metrics.socket_events.labels(event=event, outcome="ok").inc()

    async def _refuse(self, sid: str, refusal: Refusal) -> None:
        await self.sio.error(sid, refusal.code, refusal.message)
        if refusal.ends_socket:
            await self.sio.disconnect(sid)

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

    async def run_room_counts(self) -> None:
        """Send the counts of the large rooms that changed (each room by one worker, at most
        once a second: :meth:`presence.rooms.LargeRooms.due`)."""
        while True:
            await asyncio.sleep(TELL_POLL_S)
            try:
                for conversation_id in await self._rooms.due():
                    conversation = await self._conversations.record(conversation_id)
                    if conversation is None:
                        continue
                    count = await self._rooms.count(conversation)
                    await self.sio.emit(
                        "presence:count", count.to_json(), to=conversation_room(conversation_id)
                    )
            except Exception:  # a background loop must outlive any single failure
                log.exception("sending room counts failed")

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
        live connections again so none of them is swept or shown offline, and its rooms, so
        that it hears what is sent to them."""
        if self.manager is not None:
            await self.manager.resync()
        live = [
            (c.principal.subject, sid)
            for sid, c in list(self._local.items())
            if c.principal is not None and c.registered
        ]
        await self._presence.reassert(live)

    def _view_of(self, sid: str) -> str:
        connection = self._local.get(sid)
        return EXACT_VIEW if connection is not None and not connection.reserved else RESERVED_VIEW

    def _set_reserved(self, sid: str, reserved: bool) -> None:
        connection = self._local.get(sid)
        if connection is not None:
            connection.reserved = reserved

    def _live_sockets(self) -> list[tuple[str, Principal]]:
        return [
            (sid, c.principal)
            for sid, c in list(self._local.items())
            if c.principal is not None and c.registered and not c.closed
        ]

    async def close_all(self) -> None:
        """Graceful shutdown: close every socket so clients reconnect elsewhere within the
        grace period (their subjects then never look offline)."""
        for sid in list(self._local):
            with contextlib.suppress(Exception):
                await self.sio.disconnect(sid)
