"""The routed message queue: a message reaches only the workers with a local socket in one of
the rooms it is addressed to.

With one shared channel (:mod:`presence.realtime.manager`) every worker decodes every message,
so adding workers adds work on each of them for every transition. Here each worker listens on a
channel of its own and subscribes to a room by entering the room's route set in Redis
(:mod:`presence.routes`) when the room gains its first local socket, and unsubscribes by leaving
it when the room loses its last. A publisher reads the route sets of the rooms it addresses (one
``SUNION`` per bucket, one round trip) and sends the message once to each worker found: a
transition addressed to a hundred conversations costs one publish per worker that has an
audience for it, never one per room, and a worker with no socket in any of the rooms never
receives it. A per-room channel could not do that: Redis has no command that publishes to
several channels, and socket.io's sharded adapter falls back to a broadcast for a multi-room
emit.

What the shared channel gave is kept: a socket in several of the rooms gets the message once
(each worker receives one message with the whole room list), ``skip_sid``, replies to one local
socket never leave the worker, the probe (sent on the worker's own channel), and recovery: each
time the listener subscribes again, and when Redis forgot this worker, every local room is
routed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from presence.metrics import Metrics
from presence.realtime.queue import ProbedQueue
from presence.redis_url import RedisConfig
from presence.routes import RoomRoutes

# Retry of route changes that could not be written (Redis away): doubling up to this.
MAX_ROUTE_RETRY_S = 2.0
# A shutdown waits this long to take this worker's routes away.
LEAVE_WAIT_S = 2.0


def route_of(namespace: str, room: str) -> str:
    """One room of one namespace, as the route sets name it."""
    return f"{namespace}#{room}"


class RoutedRedisManager(ProbedQueue):
    def __init__(
        self,
        config: RedisConfig,
        routes: RoomRoutes,
        logger: logging.Logger,
        metrics: Metrics,
    ) -> None:
        super().__init__(config, routes.worker_id, logger, metrics)
        self._routes = routes
        self.channel = routes.channel(routes.worker_id)
        # Route changes not yet written (True: enter, False: leave), written in order by
        # one flush at a time; ``_written`` holds the routes Redis is known to have.
        self._pending: dict[str, bool] = {}
        self._written: set[str] = set()
        self._own_routes: set[str] = set()  # the own rooms of sockets that entered a room
        self._local_rooms = 0
        self._flush_lock = asyncio.Lock()
        self._retry: asyncio.Task[None] | None = None
        self._first_subscription = True

    def listening_channels(self) -> list[str]:
        return [self.channel]

    @property
    def probe_channel(self) -> str:
        return self.channel

    # -- local rooms: python-socketio's bookkeeping, watched for a first and a last socket ------

    def basic_enter_room(
        self, sid: str, namespace: str, room: str | None, eio_sid: str | None = None
    ) -> None:
        gained = room is not None and room not in self.rooms.get(namespace, {})
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if room is None or room == sid:
            return
        if gained:
            self._change(route_of(namespace, room), wanted=True)
        # A socket's own room is routed with its first other room (at admission): a socket
        # that never authenticates costs Redis nothing.
        own = route_of(namespace, sid)
        if own not in self._own_routes:
            self._own_routes.add(own)
            self._change(own, wanted=True)

    def basic_leave_room(self, sid: str, namespace: str, room: str | None) -> None:
        had = room is not None and room in self.rooms.get(namespace, {})
        super().basic_leave_room(sid, namespace, room)
        if room is None:
            return
        if room == sid:
            own = route_of(namespace, sid)
            if own in self._own_routes:
                self._own_routes.discard(own)
                self._change(own, wanted=False)
        elif had and room not in self.rooms.get(namespace, {}):
            self._change(route_of(namespace, room), wanted=False)

    def _change(self, route: str, *, wanted: bool) -> None:
        self._pending[route] = wanted
        self._local_rooms += 1 if wanted else -1
        self._metrics.pubsub_rooms.set(self._local_rooms)
        # Written in the background (batched with whatever else changes meanwhile);
        # enter_room below also waits for the write of the room it entered.
        self._flush_later()

    async def enter_room(
        self, sid: str, namespace: str, room: str, eio_sid: str | None = None
    ) -> None:
        """Enter the room, and return only once this worker is routed for it (and for the
        socket's own room): whatever is published to the room from then on reaches the
        socket (the snapshot a new socket gets is read after its rooms are entered)."""
        await super().enter_room(sid, namespace, room, eio_sid=eio_sid)
        if self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace):
            routes = (route_of(namespace, room), route_of(namespace, sid))
            if any(r not in self._written or r in self._pending for r in routes):
                await self.flush()

    # -- writing routes ----------------------------------------------------------------------

    async def flush(self) -> None:
        """Write every pending route change; one flush at a time, so changes reach Redis in
        the order they happened, and whoever waits meanwhile finds its change written by the
        flush before."""
        async with self._flush_lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            try:
                await self._routes.apply(batch)
            except BaseException:
                for route, wanted in batch.items():
                    self._pending.setdefault(route, wanted)  # newer changes win
                raise
            for route, wanted in batch.items():
                if wanted:
                    self._written.add(route)
                else:
                    self._written.discard(route)

    def _flush_later(self) -> None:
        if self._retry is None or self._retry.done():
            self._retry = asyncio.get_running_loop().create_task(self._flush_until_written())

    async def _flush_until_written(self) -> None:
        pause_s = 0.25
        while self._pending:
            try:
                await self.flush()
            except Exception as exc:
                self._metrics.redis_errors.labels(operation="route_write").inc()
                self._get_logger().warning(
                    "Cannot write message routes (%s)... retrying in %.2f secs", exc, pause_s
                )
                await asyncio.sleep(pause_s)
                pause_s = min(pause_s * 2, MAX_ROUTE_RETRY_S)

    def _local_routes(self) -> list[str]:
        shared = [
            route_of(namespace, room)
            for namespace, rooms in self.rooms.items()
            for room in rooms
            if room is not None and not self.is_sid_room(namespace, room)
        ]
        return shared + sorted(self._own_routes)

    async def resync(self) -> None:
        """Route every local room again: Redis may have lost them (a restart, a failover that
        lost unreplicated writes, a flush)."""
        for route in self._local_routes():
            self._pending.setdefault(route, True)
        await self.flush()

    async def on_subscribed(self) -> None:
        if self._first_subscription:
            # Routes a previous life of this worker id left behind lead nowhere now.
            async with self._flush_lock:
                await self._routes.forget(self.host_id)
                self._written.clear()
            self._first_subscription = False
        await self.resync()

    # -- publishing ----------------------------------------------------------------------------

    async def _publish(self, data: Any) -> None:
        try:
            targets = await self._addressees(data)
        except Exception as exc:
            self._metrics.redis_errors.labels(operation="route_read").inc()
            self._get_logger().error(
                "Cannot publish to redis... giving up", extra={"redis_exception": str(exc)}
            )
            return
        targets.discard(self.host_id)  # handled here already
        if not targets:
            return
        message = self.json.dumps(data)
        await asyncio.gather(*(self.send(self._routes.channel(w), message) for w in targets))

    async def _addressees(self, data: dict[str, Any]) -> set[str]:
        """The workers a queue message must reach."""
        method = data.get("method")
        namespace = data.get("namespace") or "/"
        if method == "callback":  # back to the worker that asked for it
            return {data["host_id"]}
        if method == "emit":
            room = data.get("room")
            if room is None:  # the whole namespace
                return await self._routes.live_workers()
            rooms: Iterable[str] = [room] if isinstance(room, str) else room
            rooms = [r for r in rooms if not self.is_sid_room(namespace, r)]
            if not rooms:  # only local sockets: a reply never leaves this worker
                return set()
            return await self._routes.workers_for(route_of(namespace, r) for r in rooms)
        if method in ("disconnect", "enter_room", "leave_room"):  # a socket of another worker
            return await self._routes.workers_for([route_of(namespace, data["sid"])])
        if method == "close_room":
            return await self._routes.workers_for([route_of(namespace, data["room"])])
        return await self._routes.live_workers()

    async def close(self) -> None:
        """Stop listening, then take this worker out of every route set (bounded), so nobody
        sends it anything more."""
        if self._retry is not None:
            self._retry.cancel()
        await super().close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._routes.forget(self.host_id), timeout=LEAVE_WAIT_S)
