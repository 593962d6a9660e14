"""What the handlers reach through the app: one typed key, no globals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from redis.asyncio import Redis

from presence.accounts import Accounts
from presence.auth.attempts import AttemptLimiter
from presence.auth.authenticator import Authenticator
from presence.clock import Clock
from presence.config import Settings
from presence.conversations import Conversations
from presence.counters import ClusterCounters
from presence.domain import Principal
from presence.keys import Keys
from presence.metrics import Metrics
from presence.registry import WorkerRegistry
from presence.service import PresenceService
from presence.store.base import Store
from presence.throttle import ActivityTracker


@dataclass(frozen=True)
class Components:
    settings: Settings
    clock: Clock
    metrics: Metrics
    redis: Redis
    store: Store
    keys: Keys
    authenticator: Authenticator
    attempts: AttemptLimiter
    accounts: Accounts
    conversations: Conversations
    presence: PresenceService
    tracker: ActivityTracker
    counters: ClusterCounters
    registry: WorkerRegistry
    # Extra readiness checks registered by other layers (e.g. "pubsub": is the listener deaf?),
    # each answering True when healthy.
    readiness: dict[str, Callable[[], bool]] = field(default_factory=dict)


COMPONENTS = web.AppKey("components", Components)
PRINCIPAL = web.RequestKey("principal", Principal)


def components(request: web.Request) -> Components:
    return request.app[COMPONENTS]


def cached_principal(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)
