"""What a worker's aiohttp application holds besides its components (:mod:`presence.api.context`):
one typed key each, shared by :mod:`presence.app`, which fills them, and
:mod:`presence.lifecycle`, which starts and stops what they hold."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web
from redis.asyncio import Redis

from presence.maintenance.lease import LeaderLease
from presence.maintenance.sweeper import Sweeper
from presence.realtime.server import RealtimeServer
from presence.store.base import Store
from presence.webhooks import WebhookDeliverer

REALTIME = web.AppKey("realtime", RealtimeServer)


@dataclass(frozen=True)
class Maintenance:
    lease: LeaderLease
    sweeper: Sweeper


MAINTENANCE = web.AppKey("maintenance", Maintenance)


@dataclass(frozen=True)
class Resources:
    """The clients a worker opens; each is closed by its own cleanup context."""

    redis: Redis
    store: Store
    # The worker's liveness beat and the leader lease, on their own connections: a storm that
    # takes every connection of the main pool must not make the cluster take this worker for
    # dead (the same client as ``redis`` when it is embedded or given).
    control_redis: Redis


RESOURCES = web.AppKey("resources", Resources)


@dataclass(frozen=True)
class Tasks:
    leading: list[asyncio.Task[None]]  # the lease and the sweep: stopped first
    others: list[asyncio.Task[None]]


TASKS = web.AppKey("tasks", Tasks)
# Set when webhooks are configured (PRESENCE_WEBHOOK_URL and PRESENCE_WEBHOOK_SECRET).
WEBHOOKS = web.AppKey("webhooks", WebhookDeliverer)
