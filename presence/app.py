"""``create_app``: the single place where things are wired together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from presence.accounts import Accounts
from presence.api import accounts, console, conversations, health, maintenance, openapi, users
from presence.api.context import COMPONENTS, Components
from presence.api.cors import cors_middleware
from presence.api.errors import error_middleware
from presence.api.observe import timing_middleware
from presence.auth.attempts import AttemptLimiter
from presence.auth.authenticator import Authenticator
from presence.auth.cache import VerifiedCache
from presence.auth.passwords import Passwords
from presence.auth.tokens import JwtCodec
from presence.clients import redis_from_url
from presence.clock import Clock, SystemClock
from presence.config import Settings
from presence.conversations import Conversations
from presence.counters import ClusterCounters
from presence.keys import Keys
from presence.lua import SCRIPTS
from presence.maintenance.lease import LeaderLease
from presence.maintenance.sweeper import Sweeper
from presence.metrics import Metrics
from presence.realtime.server import RealtimeServer
from presence.registry import ConnectionRegistry, WorkerRegistry
from presence.service import PresenceService
from presence.store.base import Store, StoreError
from presence.store.memory import MemoryStore
from presence.store.mongo import MongoStore
from presence.supervisor import Loop, start_supervised
from presence.throttle import ActivityTracker
from presence.windows import ThrottleWindows

log = logging.getLogger(__name__)

REALTIME = web.AppKey("realtime", RealtimeServer)


@dataclass(frozen=True)
class Maintenance:
    lease: LeaderLease
    sweeper: Sweeper


MAINTENANCE = web.AppKey("maintenance", Maintenance)

# Every body we accept is a few hundred bytes; 64 KiB leaves room and bounds memory per request.
MAX_BODY_BYTES = 64 * 1024
# How often start-up retries index creation while MongoDB is not answering yet.
INDEX_RETRY_S = 2.0


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
    keys = Keys(settings.redis_prefix)
    if redis is None:
        redis = (
            _embedded_redis() if settings.redis_url is None else redis_from_url(settings.redis_url)
        )
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
    connections = ConnectionRegistry(redis, keys, settings.worker_id, settings.offline_threshold_s)
    windows = ThrottleWindows.from_settings(redis, keys, settings)
    tracker = ActivityTracker(
        windows=windows,
        store=store,
        clock=clock,
        settings=settings,
        metrics=metrics,
        counters=counters,
    )
    components = Components(
        settings=settings,
        clock=clock,
        metrics=metrics,
        redis=redis,
        store=store,
        keys=keys,
        authenticator=Authenticator(
            store, codec, clock, VerifiedCache(capacity=settings.auth_cache_size)
        ),
        attempts=AttemptLimiter(
            redis,
            keys,
            per_address=settings.auth_failures_per_address,
            per_account=settings.auth_failures_per_account,
        ),
        accounts=Accounts(store, passwords or Passwords(), codec, clock),
        conversations=Conversations(store, clock),
        presence=PresenceService(
            store=store,
            clock=clock,
            settings=settings,
            metrics=metrics,
            tracker=tracker,
            connections=connections,
        ),
        tracker=tracker,
        counters=counters,
        registry=WorkerRegistry(
            redis, keys, clock, metrics, settings.worker_id, settings.worker_ttl_s
        ),
    )

    realtime = RealtimeServer(
        settings=settings,
        clock=clock,
        metrics=metrics,
        keys=keys,
        authenticator=components.authenticator,
        attempts=components.attempts,
        conversations=components.conversations,
        presence=components.presence,
    )
    components.readiness["pubsub"] = lambda: not realtime.pubsub_deaf()
    components.registry.on_forgotten.append(realtime.reassert)
    lease = LeaderLease(
        redis=redis,
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
    realtime.attach(app)
    app.on_shutdown.append(_close_sockets)
    for module in (accounts, users, conversations, maintenance, health, openapi, console):
        module.add_routes(app)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _close_sockets(app: web.Application) -> None:
    # Lease first, so another worker leads at once; then the sockets, so their clients
    # reconnect elsewhere within the grace period.
    await app[MAINTENANCE].lease.release()
    await app[REALTIME].close_all()


async def _ensure_indexes(store: Store) -> None:
    while True:
        try:
            await store.ensure_indexes()
            return
        except StoreError as exc:
            log.warning("creating indexes failed, retrying: %s", exc)
            await asyncio.sleep(INDEX_RETRY_S)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Start the background tasks; on exit flush what is pending and close the clients."""
    c = app[COMPONENTS]
    if c.settings.embedded:
        log.warning(
            "EMBEDDED MODE: in-process Redis and store, NOTHING IS PERSISTED, a single worker "
            "only. Set PRESENCE_REDIS_URL and PRESENCE_MONGO_URL for production."
        )
    try:
        await asyncio.wait_for(c.store.ensure_indexes(), timeout=10)
    except (StoreError, TimeoutError):
        log.warning("MongoDB not answering at start-up; indexes will be created when it does")
        indexes: asyncio.Task[None] | None = asyncio.create_task(_ensure_indexes(c.store))
    else:
        indexes = None
    realtime = app[REALTIME]
    try:
        for script in SCRIPTS:
            await c.redis.script_load(script)
        stale = await c.presence.forget_previous_life(c.settings.worker_id)
    except RedisError:
        log.warning("Redis not answering at start-up; previous connections not cleaned")
    else:
        if stale:
            log.warning("closed connections of this worker's previous life", extra={"count": stale})
    realtime.start()
    loops: dict[str, Loop] = {
        "throttle_flusher": c.tracker.run_flusher,
        "throttle_cache_cleanup": c.tracker.run_cache_cleanup,
        "worker_heartbeat": c.registry.run,
        "grace_finisher": c.presence.run_grace_finisher,
        "transport_activity": realtime.run_transport_activity,
        "slow_consumer_check": realtime.run_slow_consumer_check,
    }
    if realtime.manager is not None:
        loops["pubsub_probe"] = realtime.manager.run_probe
    maintenance = app[MAINTENANCE]
    loops.update(maintenance_lease=maintenance.lease.run, sweeper=maintenance.sweeper.run)
    tasks = start_supervised(loops, c.metrics)
    if indexes is not None:
        tasks.append(indexes)
    log.info("worker started", extra={"settings": repr(c.settings)})
    yield
    await realtime.close_all()
    for task in tasks:
        task.cancel()
    # Bounded: a background task stuck in a client call that swallows its cancellation must
    # not keep the worker from shutting down.
    await asyncio.wait(tasks, timeout=5)
    await c.tracker.drain()
    with contextlib.suppress(RedisError):
        await c.registry.leave()
    await maintenance.lease.release()
    await realtime.stop()
    # Closing clients is bounded too: a shutdown must finish, whatever a connection is doing.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(c.redis.aclose(), timeout=5)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(c.store.close(), timeout=5)
