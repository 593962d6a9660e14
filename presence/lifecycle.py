"""A worker's life: the cleanup contexts that open and close its resources in order (the
database, Redis, the message queue, the background loops) and the hand-over that begins a
graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from redis.exceptions import RedisError

from presence.api.context import COMPONENTS
from presence.appkeys import MAINTENANCE, REALTIME, RESOURCES, TASKS, WEBHOOKS, Tasks
from presence.lua import SCRIPTS
from presence.store.base import Store, StoreError
from presence.supervisor import Loop, start_supervised

log = logging.getLogger(__name__)

# How often start-up retries index creation while MongoDB is not answering yet.
INDEX_RETRY_S = 2.0


async def store_context(app: web.Application) -> AsyncIterator[None]:
    """MongoDB: indexes at start-up (retried in the background while it does not answer),
    closed last."""
    store = app[RESOURCES].store
    retry: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(store.ensure_indexes(), timeout=10)
    except (StoreError, TimeoutError):
        log.warning("MongoDB not answering at start-up; indexes will be created when it does")
        retry = asyncio.create_task(_ensure_indexes(store))
    yield
    if retry is not None:
        retry.cancel()
    # Closing clients is bounded: a shutdown must finish, whatever a connection is doing.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(store.close(), timeout=5)


async def _ensure_indexes(store: Store) -> None:
    while True:
        try:
            await store.ensure_indexes()
            return
        except StoreError as exc:
            log.warning("creating indexes failed, retrying: %s", exc)
            await asyncio.sleep(INDEX_RETRY_S)


async def redis_context(app: web.Application) -> AsyncIterator[None]:
    """Redis: every script loaded, this worker's previous life forgotten; closed at the end."""
    c, redis = app[COMPONENTS], app[RESOURCES].redis
    try:
        for script in SCRIPTS:
            await redis.script_load(script)
        stale = await c.presence.forget_previous_life(c.settings.worker_id)
    except RedisError:
        log.warning("Redis not answering at start-up; previous connections not cleaned")
    else:
        if stale:
            log.warning("closed connections of this worker's previous life", extra={"count": stale})
    yield
    control = app[RESOURCES].control_redis
    for client in (redis,) if control is redis else (redis, control):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.aclose(), timeout=5)


async def message_queue_context(app: web.Application) -> AsyncIterator[None]:
    """The Socket.IO message queue's listener, from start-up, not from the first socket."""
    realtime = app[REALTIME]
    realtime.start()
    yield
    await realtime.stop()


async def background_context(app: web.Application) -> AsyncIterator[None]:
    """Every background loop, supervised and named; on the way out the pending writes are
    flushed and this worker leaves the live count."""
    c, realtime, maintenance = app[COMPONENTS], app[REALTIME], app[MAINTENANCE]
    loops: dict[str, Loop] = {
        "throttle_flusher": c.tracker.run_flusher,
        "throttle_cache_cleanup": c.tracker.run_cache_cleanup,
        "worker_heartbeat": c.registry.run,
        "grace_finisher": c.presence.run_grace_finisher,
        "choices": c.choices.run,
        "write_behind": c.presence.writes.run,
        "event_feed": c.feed.run,
        "transport_activity": realtime.run_transport_activity,
        "slow_consumer_check": realtime.run_slow_consumer_check,
        "room_counts": realtime.run_room_counts,
    }
    if realtime.manager is not None:
        loops["pubsub_probe"] = realtime.manager.run_probe
    if WEBHOOKS in app:
        loops["webhooks"] = app[WEBHOOKS].run
    leading: dict[str, Loop] = {
        "maintenance_lease": maintenance.lease.run,
        "sweeper": maintenance.sweeper.run,
    }
    app[TASKS] = Tasks(
        leading=start_supervised(leading, c.metrics), others=start_supervised(loops, c.metrics)
    )
    log.info("worker started", extra={"settings": repr(c.settings)})
    yield
    await _stop(app[TASKS].others)
    await c.presence.stop_grace_timers()
    await c.tracker.drain()
    # The online flags and lastSeen of the last transitions, into the database before it closes.
    await c.presence.writes.drain()
    await c.feed.flush()
    with contextlib.suppress(RedisError):
        await c.registry.leave()


async def hand_over(app: web.Application) -> None:
    """The first step of a shutdown, while connections are still open: stop leading (so
    another worker leads at once, and nothing here takes the lease back), then close the
    sockets so their clients reconnect elsewhere within the grace period."""
    await _stop(app[TASKS].leading)
    await app[MAINTENANCE].lease.release()
    await app[REALTIME].close_all()


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    # Bounded: a task stuck in a client call that swallows its cancellation must not keep
    # the worker from shutting down.
    if tasks:
        await asyncio.wait(tasks, timeout=5)
