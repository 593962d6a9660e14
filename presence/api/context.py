"""What the handlers reach through the app: one typed key, no globals. Services only: no
handler reads Redis or the store itself."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from presence.accounts import Accounts
from presence.auth.attempts import AttemptLimiter
from presence.auth.authenticator import Authenticator
from presence.auth.services import ServiceRateLimiter, ServiceTokens
from presence.choices import Choices
from presence.clock import Clock
from presence.config import Settings
from presence.conversations import Conversations
from presence.counters import ClusterCounters
from presence.directory import Directory
from presence.domain import Principal
from presence.feed import EventFeed
from presence.metrics import Metrics
from presence.readiness import Readiness
from presence.registry import WorkerRegistry
from presence.rooms import LargeRooms
from presence.service import PresenceService
from presence.throttle import ActivityTracker


@dataclass(frozen=True)
class Components:
    settings: Settings
    clock: Clock
    metrics: Metrics
    authenticator: Authenticator
    attempts: AttemptLimiter
    service_tokens: ServiceTokens
    service_limiter: ServiceRateLimiter
    accounts: Accounts
    conversations: Conversations
    presence: PresenceService
    choices: Choices
    rooms: LargeRooms
    tracker: ActivityTracker
    counters: ClusterCounters
    registry: WorkerRegistry
    readiness: Readiness
    feed: EventFeed
    directory: Directory


COMPONENTS = web.AppKey("components", Components)
PRINCIPAL = web.RequestKey("principal", Principal)


def components(request: web.Request) -> Components:
    return request.app[COMPONENTS]


def cached_principal(request: web.Request) -> Principal | None:
    return request.get(PRINCIPAL)
