"""What both Socket.IO message queues share: Redis clients from the worker's configuration, a
listener that subscribes again after any failure, and a probe that tells a deaf listener.

python-socketio's Redis manager reconnects by itself, but silently: while its listener is down
or backing off (up to 60 s), cross-worker events are lost and the worker looks healthy. Every
:data:`PROBE_INTERVAL_S` each worker publishes a probe on a channel it listens on and expects to
hear it back; not hearing it for :data:`DEAF_AFTER_S` marks the worker deaf in ``/readyz`` and
metrics. In Cluster mode both queues publish and listen with sharded pub/sub
(``SPUBLISH``/``SSUBSCRIBE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from socketio.async_pubsub_manager import AsyncPubSubManager

from presence.clients import redis_client
from presence.metrics import Metrics
from presence.realtime.delivery import DirectDelivery
from presence.redis_url import RedisConfig

# A probe every 2 s costs nothing and bounds how long a deaf worker goes unnoticed.
PROBE_INTERVAL_S = 2.0
# Three missed probes: one slow round trip is not deafness.
DEAF_AFTER_S = 3 * PROBE_INTERVAL_S
PROBE_METHOD = "presence:probe"
# Every probe carries this; the listener tells probes by it without decoding them.
_PROBE_MARK = b'"probe": true'
# A message for every worker itself rather than for its sockets (a directory change); told by
# this mark without decoding the others, like probes. Messages are encoded by orjson (the
# packets' encoder, which python-socketio's managers share), compactly; a worker of an older
# release wrote them with the standard library's spaces.
DIRECTORY_METHOD = "presence:directory"
_DIRECTORY_MARKS = (b'"method":"presence:directory"', b'"method": "presence:directory"')
# The longest pause between two attempts to subscribe again: a failover takes seconds.
MAX_RETRY_S = 2.0
# How long a shutdown waits for the listener to stop.
STOP_WAIT_S = 2.0


class ProbedQueue(AsyncPubSubManager, DirectDelivery):  # type: ignore[misc]
    """python-socketio's pub/sub manager over Redis, on the worker's own Redis configuration:
    every client comes from :func:`presence.clients.redis_client` (never from a second parse
    of the URL). Subclasses say which channels the listener subscribes to
    (:meth:`listening_channels`), where the probe goes (:attr:`probe_channel`) and how a
    message is addressed (``_publish``). What it delivers to this worker's sockets goes
    through :class:`DirectDelivery` (next in line after the pub/sub manager)."""

    def __init__(
        self, config: RedisConfig, host_id: str, logger: logging.Logger, metrics: Metrics
    ) -> None:
        super().__init__(logger=logger)
        # The worker id: what the routes name and what callbacks are returned to.
        self.host_id = host_id
        self._config = config
        self._metrics = metrics
        self._marker = f'"host_id": "{host_id}", "probe": true'.encode()
        self._started = time.monotonic()
        self._last_heard: float | None = None
        self._deaf = False
        self._listening = False  # subscribed, between two failures
        self._listener: Redis | None = None  # the listener's own client
        self.redis: Redis | None = None  # the publisher's client
        self.connected = False
        # Called on every worker with what :meth:`tell_workers` sent (this one's included).
        self.on_directory: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        # Called when the listener hears again after it may have missed messages: it
        # subscribed again, or its probe came back after a deafness (see _heard_again).
        self.on_heard_again: Callable[[], Awaitable[None]] | None = None
        self._subscriptions = 0
        self._deaf_since_subscription = 0  # the subscription a deafness began under
        self._resyncing: asyncio.Task[None] | None = None
        self._resync_again = False

    # -- what subclasses decide ------------------------------------------------------------------

    def listening_channels(self) -> list[str]:
        raise NotImplementedError

    @property
    def probe_channel(self) -> str:
        raise NotImplementedError

    async def on_subscribed(self) -> None:
        """Called each time the listener has (re)subscribed, before it reads; raising makes
        it subscribe again after a pause."""

    async def resync(self) -> None:
        """Redis forgot this worker: tell it again whatever the queue needs it to know."""

    # -- publishing ------------------------------------------------------------------------------

    def _publisher(self) -> Redis:
        if self.redis is None or not self.connected:
            self.redis = redis_client(self._config)
            self.connected = True
        return self.redis

    async def send(self, channel: str, message: str, *, probe: bool = False) -> bool:
        """Publish one encoded message, trying twice as python-socketio's manager does; False
        when both attempts failed (the message is dropped, and logged). Probes are not
        counted as published messages."""
        for attempt in range(2):
            try:
                client = self._publisher()
                if self._config.is_cluster:
                    await client.spublish(channel, message)
                else:
                    await client.publish(channel, message)
                if not probe:
                    self._metrics.pubsub_published.inc()
                return True
            except Exception as exc:
                self.connected = False
                self._get_logger().error(
                    "Cannot publish to redis... %s", "retrying" if attempt == 0 else "giving up",
                    extra={"redis_exception": str(exc)},
                )  # fmt: skip
        return False

    async def tell_workers(self, payload: dict[str, Any]) -> None:
        """Hand ``payload`` to :attr:`on_directory` on every live worker, this one first."""
        message = {"method": DIRECTORY_METHOD, "host_id": self.host_id, "payload": payload}
        await self._handle_directory(message)
        await self._publish(message)

    async def _handle_directory(self, message: dict[str, Any]) -> None:
        if self.on_directory is None:
            return
        try:
            await self.on_directory(message["payload"])
        except Exception:  # one bad change must not stop the listener
            self._get_logger().exception("applying a directory change failed")

    # -- listening -------------------------------------------------------------------------------

    async def _messages(self) -> AsyncIterator[Any]:
        """The channels' messages, subscribing again after any failure with a short capped
        back-off (python-socketio's own reaches 60 s): a Sentinel or Cluster failover moves
        a channel to a promoted replica within seconds, and the listener must be there.
        The listener has a client of its own, so a publisher reconnecting never swaps the
        connection it reads from."""
        retry_s = 0.25
        sharded = self._config.is_cluster
        while True:
            client = self._listener = redis_client(self._config)
            # A ClusterPubSub in Cluster mode; both speak what is used here.
            pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
            self._watch_reconnections(pubsub)
            channels = self.listening_channels()
            try:
                if sharded:
                    # The pub/sub finds a channel's shard from the client's slot map, which a
                    # cluster client only has once it met the cluster.
                    await client.initialize()
                    await pubsub.ssubscribe(*channels)
                    receive = pubsub.get_sharded_message
                else:
                    await pubsub.subscribe(*channels)
                    receive = pubsub.get_message
                self._metrics.pubsub_channels.set(len(channels))
                await self.on_subscribed()
                self._listening = True
                self._subscriptions += 1
                if self._subscriptions > 1:  # messages sent while it was away are lost
                    self._heard_again()
                retry_s = 0.25
                while True:
                    message = await receive(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") in ("message", "smessage"):
                        yield message["data"]
            except Exception as exc:
                self._listening = False
                self._metrics.pubsub_channels.set(0)
                self._update_deafness()
                self._get_logger().error(
                    "Cannot receive from redis (%s)... retrying in %.2f secs", exc, retry_s
                )
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, MAX_RETRY_S)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()

    def _watch_reconnections(self, pubsub: Any) -> None:
        """redis-py's pub/sub reconnects and subscribes again by itself (its ``on_connect``
        callback), so a killed connection may never reach the loop above; what was published
        meanwhile is lost all the same, so each such reconnection is a hearing again."""
        resubscribe = getattr(pubsub, "on_connect", None)
        if resubscribe is None:
            return

        async def on_connect(_: Any, connection: Any) -> None:
            await resubscribe(connection)
            self._get_logger().warning("pub/sub listener reconnected")
            self._heard_again()

        # Before the first subscription: that is when redis-py registers the callback (as a
        # weak reference to a bound method, hence the binding).
        pubsub.on_connect = types.MethodType(on_connect, pubsub)

    async def _listen(self) -> AsyncIterator[Any]:
        async for message in self._messages():
            if isinstance(message, bytes) and _PROBE_MARK in message:
                if self._marker in message:
                    self._last_heard = time.monotonic()
                continue  # a probe (another worker's, on a shared channel): nothing to do
            self._metrics.pubsub_received.inc()
            if isinstance(message, bytes) and any(m in message for m in _DIRECTORY_MARKS):
                data = json.loads(message)
                if data.get("host_id") != self.host_id:  # this worker applied it already
                    await self._handle_directory(data)
                continue
            yield message

    # -- the probe -------------------------------------------------------------------------------

    def silence_s(self) -> float:
        """Seconds since the last probe came back (or since start, before the first one)."""
        return time.monotonic() - (self._last_heard or self._started)

    def is_deaf(self) -> bool:
        """Not subscribed right now, or not hearing its own probe for a while."""
        return not self._listening or self.silence_s() > DEAF_AFTER_S

    async def run_probe(self) -> None:
        # Encoded by hand so that the listener recognises it by its bytes, without decoding.
        probe = f'{{"method": "{PROBE_METHOD}", "host_id": "{self.host_id}", "probe": true}}'
        while True:
            await self.send(self.probe_channel, probe, probe=True)
            await asyncio.sleep(PROBE_INTERVAL_S)
            self._update_deafness()

    def _update_deafness(self) -> None:
        """Log and export a change of deafness: from the probe loop, and at once when the
        listener loses its subscription."""
        deaf = self.is_deaf()
        if deaf and not self._deaf:
            self._metrics.pubsub_deaf_episodes.inc()
            self._deaf_since_subscription = self._subscriptions
            self._get_logger().error(
                "pub/sub listener is deaf: own probe not heard for %.1f s", self.silence_s()
            )
        elif self._deaf and not deaf:
            self._get_logger().warning("pub/sub listener hears again")
            if self._subscriptions == self._deaf_since_subscription:
                # Deaf without losing its subscription (Redis silently dropped messages):
                # a new subscription did not already announce it.
                self._heard_again()
        self._deaf = deaf
        self._metrics.pubsub_deaf.set(1 if deaf else 0)
        self._metrics.pubsub_probe_age.set(self.silence_s())

    def _heard_again(self) -> None:
        """Run :attr:`on_heard_again` (one run at a time; a second episode during a run makes
        one more run after it)."""
        if self.on_heard_again is None:
            return
        if self._resyncing is not None and not self._resyncing.done():
            self._resync_again = True
            return
        self._resyncing = asyncio.get_running_loop().create_task(self._run_heard_again())

    async def _run_heard_again(self) -> None:
        while True:
            self._resync_again = False
            assert self.on_heard_again is not None
            try:
                await self.on_heard_again()
            except Exception:
                self._get_logger().exception("resynchronising after the listener failed")
            if not self._resync_again:
                return

    async def close(self) -> None:
        """Stop the listener and close its connections, bounded: a listener that swallows its
        cancellation must not hang the shutdown."""
        if self._resyncing is not None:
            self._resyncing.cancel()
        thread = getattr(self, "thread", None)
        if isinstance(thread, asyncio.Task):
            thread.cancel()
            await asyncio.wait({thread}, timeout=STOP_WAIT_S)
        for client in (self.redis, self._listener):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
