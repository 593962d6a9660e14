"""A real HTTP server that receives webhooks, records them, and can be stopped and started again
on the same port (a receiver outage, for real)."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from presence.webhooks import GROUP
from tests.support.httpserver import LocalHttpServer


@dataclass
class Delivery:
    event_id: str
    signature: str
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class Receiver(LocalHttpServer):
    def __init__(self, secret: bytes) -> None:
        super().__init__()
        self.secret = secret
        self.deliveries: list[Delivery] = []
        self.refusing = False  # answer 503 instead of recording

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        if self.refusing:
            return web.Response(status=503)
        self.deliveries.append(
            Delivery(
                request.headers.get("X-Presence-Event-Id", ""),
                request.headers.get("X-Presence-Signature", ""),
                await request.read(),
            )
        )
        return web.Response(status=204)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self._hook)

    def verified(self, delivery: Delivery) -> bool:
        expected = "sha256=" + hmac.new(self.secret, delivery.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, delivery.signature)

    def event_ids(self) -> list[str]:
        return [d.event_id for d in self.deliveries]


async def group_exists(redis: Redis, stream: str) -> bool:
    """Whether the workers' delivery group is on the stream yet (they make it at start-up, at
    the end of the stream: what was appended before is not delivered)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no stream yet
        return False
    return any(g.get("name") in (GROUP, GROUP.encode()) for g in groups)
