"""The broadcast message queue: every worker publishes to and listens on one channel, so every
worker receives (and decodes) every message. Kept beside the routed queue
(:mod:`presence.realtime.routed`, the default) to measure one against the other
(``PRESENCE_MESSAGE_QUEUE=broadcast``)."""

from __future__ import annotations

import logging
from typing import Any

from presence.metrics import Metrics
from presence.realtime.queue import ProbedQueue
from presence.redis_url import RedisConfig


class BroadcastRedisManager(ProbedQueue):
    def __init__(
        self,
        config: RedisConfig,
        channel: str,
        host_id: str,
        logger: logging.Logger,
        metrics: Metrics,
    ) -> None:
        super().__init__(config, host_id, logger, metrics)
        self.channel = channel

    def listening_channels(self) -> list[str]:
        return [self.channel]

    @property
    def probe_channel(self) -> str:
        return self.channel

    async def _publish(self, data: Any) -> None:
        await self.send(self.channel, self.json.dumps(data))
