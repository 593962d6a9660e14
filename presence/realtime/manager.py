"""The Socket.IO message queue over Redis pub/sub, with a probe that tells a deaf listener.

python-socketio's Redis manager reconnects by itself, but silently: while its listener is down
or backing off (up to 60 s), cross-worker events are lost and the worker looks healthy. Every
:data:`PROBE_INTERVAL_S` each worker publishes a probe on the channel and expects to hear it
back; not hearing it for :data:`DEAF_AFTER_S` marks the worker deaf in ``/readyz`` and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import socketio
from redis.asyncio import Redis

from presence.clients import redis_client
from presence.metrics import Metrics
from presence.redis_url import RedisConfig

# A probe every 2 s costs nothing and bounds how long a deaf worker goes unnoticed.
PROBE_INTERVAL_S = 2.0
# Three missed probes: one slow round trip is not deafness.
DEAF_AFTER_S = 3 * PROBE_INTERVAL_S
_PROBE_METHOD = "presence:probe"
# The longest pause between two attempts to subscribe again: a failover takes seconds.
MAX_RETRY_S = 2.0
# How long a shutdown waits for the listener to stop.
STOP_WAIT_S = 2.0


class ProbedRedisManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis manager on the worker's own Redis configuration: its clients come
    from :func:`presence.clients.redis_client` (never from a second parse of the URL), and in
    Cluster mode it publishes and listens with sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``)."""

    def __init__(
        self, config: RedisConfig, channel: str, logger: logging.Logger, metrics: Metrics
    ) -> None:
        super().__init__(url=config.url, channel=channel, logger=logger)
        self._config = config
        self._metrics = metrics
        self._probe_host = f"probe-{uuid.uuid4().hex}"
        self._marker = self._probe_host.encode()
        self._started = time.monotonic()
        self._last_heard: float | None = None
        self._deaf = False
        self._listening = False  # subscribed, between two failures
        self._listener: Redis | None = None  # the listener's own client

    def _redis_connect(self) -> None:
        """The publisher's client (python-socketio calls this; the listener has its own)."""
        self.redis = redis_client(self._config)
        self.connected = True

    async def _publish(self, data: Any) -> Any:
        if not self._config.is_cluster:
            return await super()._publish(data)
        for attempt in range(2):
            try:
                if not self.connected:
                    self._redis_connect()
                return await self.redis.spublish(self.channel, self.json.dumps(data))
            except Exception as exc:
                self.connected = False
                self._get_logger().error(
                    "Cannot publish to redis... %s", "retrying" if attempt == 0 else "giving up",
                    extra={"redis_exception": str(exc)},
                )  # fmt: skip
        return None

    async def _messages(self) -> AsyncIterator[Any]:
        """The channel's messages, subscribing again after any failure with a short capped
        back-off (python-socketio's own reaches 60 s): a Sentinel or Cluster failover moves
        the channel to a promoted replica within seconds, and the listener must be there.
        The listener has a client of its own, so a publisher reconnecting never swaps the
        connection it reads from."""
        retry_s = 0.25
        sharded = self._config.is_cluster
        while True:
            client = self._listener = redis_client(self._config)
            # A ClusterPubSub in Cluster mode; both speak what is used here.
            pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
            try:
                if sharded:
                    # The pub/sub finds the channel's shard from the client's slot map,
                    # which a cluster client only has once it met the cluster.
                    await client.initialize()
                    await pubsub.ssubscribe(self.channel)
                    receive = pubsub.get_sharded_message
                else:
                    await pubsub.subscribe(self.channel)
                    receive = pubsub.get_message
                self._listening = True
                retry_s = 0.25
                while True:
                    message = await receive(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") in ("message", "smessage"):
                        yield message["data"]
            except Exception as exc:
                self._listening = False
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

    async def _listen(self) -> AsyncIterator[Any]:
        async for message in self._messages():
            if isinstance(message, bytes) and self._marker in message:
                self._last_heard = time.monotonic()
                continue  # ours; nothing for the dispatcher to do
            yield message

    def silence_s(self) -> float:
        """Seconds since the last probe came back (or since start, before the first one)."""
        return time.monotonic() - (self._last_heard or self._started)

    def is_deaf(self) -> bool:
        """Not subscribed right now, or not hearing its own probe for a while."""
        return not self._listening or self.silence_s() > DEAF_AFTER_S

    async def run_probe(self) -> None:
        while True:
            await self._publish({"method": _PROBE_METHOD, "host_id": self._probe_host})
            await asyncio.sleep(PROBE_INTERVAL_S)
            self._update_deafness()

    def _update_deafness(self) -> None:
        """Log and export a change of deafness: from the probe loop, and at once when the
        listener loses its subscription."""
        deaf = self.is_deaf()
        if deaf and not self._deaf:
            self._metrics.pubsub_deaf_episodes.inc()
            self._get_logger().error(
                "pub/sub listener is deaf: own probe not heard for %.1f s", self.silence_s()
            )
        elif self._deaf and not deaf:
            self._get_logger().warning("pub/sub listener hears again")
        self._deaf = deaf
        self._metrics.pubsub_deaf.set(1 if deaf else 0)
        self._metrics.pubsub_probe_age.set(self.silence_s())

    async def close(self) -> None:
        """Stop the listener and close its connections, bounded: a listener that swallows its
        cancellation must not hang the shutdown."""
        thread = getattr(self, "thread", None)
        if isinstance(thread, asyncio.Task):
            thread.cancel()
            await asyncio.wait({thread}, timeout=STOP_WAIT_S)
        for client in (self.redis, self._listener):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
