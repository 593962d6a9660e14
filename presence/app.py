"""``create_app``: the single place where things are wired together."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.asyncio import Redis

from presence import lifecycle
from presence.accounts import Accounts
from presence.api import (
    accounts,
    console,
    conversations,
    directory,
    health,
    maintenance,
    openapi,
    service,
    users,
)
from presence.api.context import COMPONENTS, Components
from presence.api.cors import cors_middleware
from presence.api.errors import error_middleware
from presence.api.observe import timing_middleware
from presence.appkeys import MAINTENANCE, REALTIME, RESOURCES, WEBHOOKS, Maintenance, Resources
from presence.auth.attempts import AttemptLimiter
from presence.auth.authenticator import Authenticator
from presence.auth.cache import VerifiedCache
from presence.auth.passwords import Passwords
from presence.auth.platform import PlatformKeys, PlatformTokens
from presence.auth.services import ServiceRateLimiter, ServiceTokens
from presence.auth.tokens import JwtCodec
from presence.choices import Choices, ChoiceSchedule
from presence.clients import redis_client
from presence.clock import Clock, SystemClock
from presence.config import Settings
from presence.conversations import Conversations
from presence.counters import ClusterCounters
from presence.directory import Directory
from presence.feed import EventFeed
from presence.keys import Keys
from presence.maintenance.lease import LeaderLease
from presence.maintenance.sweeper import Sweeper
from presence.metrics import Metrics
from presence.profiles import Profiles
from presence.readiness import Readiness
from presence.realtime.server import RealtimeServer
from presence.registry import ConnectionRegistry, WorkerRegistry
from presence.rooms import LargeRooms
from presence.routes import RoomRoutes
from presence.service import PresenceService
from presence.store.base import Store
from presence.store.memory import MemoryStore
from presence.store.mongo import MongoStore
from presence.throttle import ActivityTracker
from presence.webhooks import WebhookDeliverer
from presence.windows import ThrottleWindows
from presence.write_behind import OnlineWrites

log = logging.getLogger(__name__)

__all__ = ["MAINTENANCE", "REALTIME", "RESOURCES", "create_app"]

# The largest body any handler takes (a directory import); each handler has its own, smaller
# bound (presence.api.parsing), 64 KiB unless it says otherwise.
MAX_BODY_BYTES = 16 * 1024 * 1024


def _embedded_redis() -> Redis:
    import fakeredis  # embedded mode only: never on the production path

    client: Redis = fakeredis.FakeAsyncRedis()
    return client


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    redis: Redis | None = None,
    passwords: Passwords | None = None,
) -> web.Application:
    clock = clock or SystemClock()
    metrics = Metrics(settings.worker_id)
    keys = Keys(settings.redis_prefix, settings.redis_buckets)
    control_redis = redis
    if redis is None:
        redis = _embedded_redis() if settings.redis is None else redis_client(settings.redis)
        control_redis = redis if settings.redis is None else redis_client(settings.redis)
    assert control_redis is not None
    if store is None:
        if settings.mongo_url is None:
            store = MemoryStore()
        else:
            store = MongoStore.from_url(
                settings.mongo_url, settings.mongo_db, max_batch=settings.mongo_max_batch
            )
    # Embedded mode without a configured secret: tokens live as long as the process anyway.
    secret = settings.jwt_secret or secrets.token_urlsafe(48)
    codec = JwtCodec(secret, settings.jwt_ttl_s, clock)
    counters = ClusterCounters(redis, keys, metrics)
    routes = RoomRoutes(redis, keys, clock, settings.worker_id)
    connections = ConnectionRegistry(redis, keys, settings.worker_id, settings.offline_threshold_s)
    windows = ThrottleWindows.from_settings(redis, keys, settings)
    online_writes = OnlineWrites(
        store, metrics, settings.write_behind_s, settle=connections.settle_written
    )
    profiles = Profiles(
        store,
        redis,
        keys,
        clock,
        metrics,
        capacity=settings.profile_cache_size,
        ttl_s=settings.profile_cache_ttl_s,
    )
    tracker = ActivityTracker(
        windows=windows,
        store=store,
        clock=clock,
        settings=settings,
        metrics=metrics,
        counters=counters,
        online_writes=online_writes,
    )
    memberships = Conversations(store, clock, profiles, fanout_limit=settings.room_fanout_limit)
    presence = PresenceService(
        store=store,
        clock=clock,
        settings=settings,
        metrics=metrics,
        tracker=tracker,
        connections=connections,
        profiles=profiles,
        writes=online_writes,
    )
    components = Components(
        settings=settings,
        clock=clock,
        metrics=metrics,
        authenticator=Authenticator(
            store,
            codec,
            clock,
            VerifiedCache(capacity=settings.auth_cache_size),
            platform=_platform_tokens(settings, metrics),
            provision=settings.jwt_provision,
        ),
        attempts=AttemptLimiter(
            redis,
            keys,
            per_address=settings.auth_failures_per_address,
            per_account=settings.auth_failures_per_account,
        ),
        service_tokens=ServiceTokens(store, clock),
        service_limiter=ServiceRateLimiter(redis, keys, metrics, settings.service_rate_limit),
        accounts=Accounts(store, passwords or Passwords(), codec, clock, profiles),
        conversations=memberships,
        presence=presence,
        rooms=LargeRooms(redis, keys, clock, presence, memberships),
        choices=Choices(
            presence=presence,
            store=store,
            schedule=ChoiceSchedule(redis, keys),
            clock=clock,
            settings=settings,
            metrics=metrics,
        ),
        tracker=tracker,
        counters=counters,
        registry=WorkerRegistry(
            control_redis, keys, clock, metrics, settings.worker_id, settings.worker_ttl_s, routes
        ),
        readiness=Readiness(redis, store),
        feed=EventFeed(
            redis,
            keys,
            clock,
            metrics,
            maxlen=settings.events_maxlen,
            wait_s=settings.events_wait_s,
        ),
        directory=Directory(store, profiles, clock),
    )
    components.presence.add_listener(components.feed.on_change)

    realtime = RealtimeServer(
        settings=settings,
        clock=clock,
        metrics=metrics,
        keys=keys,
        authenticator=components.authenticator,
        attempts=components.attempts,
        conversations=components.conversations,
        presence=components.presence,
        choices=components.choices,
        rooms=components.rooms,
        routes=routes,
    )
    components.readiness.extra["pubsub"] = lambda: not realtime.pubsub_deaf()
    components.directory.add_listener(realtime.live_directory)
    # Redis forgot everything: the cache's generations with it (before the reassertion reads).
    components.registry.on_forgotten.append(_as_coroutine(profiles.clear))
    components.registry.on_forgotten.append(realtime.reassert)
    lease = LeaderLease(
        redis=control_redis,
        keys=keys,
        clock=clock,
        metrics=metrics,
        worker_id=settings.worker_id,
        incarnation=components.registry.incarnation,
        ttl_s=settings.leader_ttl_s,
        next_epoch=store.next_leader_epoch,
    )
    sweeper = Sweeper(
        lease=lease,
        connections=connections,
        workers=components.registry,
        presence=components.presence,
        choices=components.choices,
        store=store,
        windows=windows,
        clock=clock,
        settings=settings,
        metrics=metrics,
    )

    app = web.Application(
        middlewares=[cors_middleware, timing_middleware, error_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[COMPONENTS] = components
    app[REALTIME] = realtime
    app[MAINTENANCE] = Maintenance(lease, sweeper)
    app[RESOURCES] = Resources(redis, store, control_redis)
    if settings.webhook_url is not None:
        app[WEBHOOKS] = WebhookDeliverer(
            redis,
            keys,
            metrics,
            url=settings.webhook_url,
            secret=settings.webhook_secret.encode(),
            consumer=settings.worker_id,
            timeout_s=settings.webhook_timeout_s,
            max_backoff_s=settings.webhook_max_backoff_s,
            claim_after_s=settings.webhook_claim_after_s,
        )
    realtime.attach(app)
    routed = (accounts, users, conversations, service, directory, maintenance, health, openapi)
    for module in (*routed, console):
        module.add_routes(app)
    # One context per resource, started in this order and stopped in the reverse one.
    app.cleanup_ctx.extend(
        [
            lifecycle.store_context,
            lifecycle.redis_context,
            lifecycle.message_queue_context,
            lifecycle.background_context,
        ]
    )
    app.on_shutdown.append(lifecycle.hand_over)
    if settings.embedded:
        log.warning(
            "EMBEDDED MODE: in-process Redis and store, NOTHING IS PERSISTED, a single worker "
            "only. Set PRESENCE_REDIS_URL and PRESENCE_MONGO_URL for production."
        )
    return app


def _as_coroutine(action: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        action()

    return run


def _platform_tokens(settings: Settings, metrics: Metrics) -> PlatformTokens | None:
    """The host platform's tokens, when its identity provider's JWKS URL is set."""
    if settings.jwt_jwks_url is None:
        return None
    keys = PlatformKeys(
        settings.jwt_jwks_url,
        metrics,
        ttl_s=settings.jwt_jwks_ttl_s,
        refresh_after_s=settings.jwt_jwks_refresh_s,
    )
    return PlatformTokens(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        subject_claim=settings.jwt_subject_claim,
        name_claim=settings.jwt_name_claim,
    )
