"""Liveness, readiness (naming the dependency that is down) and Prometheus metrics."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from presence.api.context import components
from presence.api.responses import json_response
from presence.domain import milliseconds

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    c = components(request)
    return json_response(
        {"success": True, "data": {"status": "ok", "worker": c.settings.worker_id}}
    )


async def readyz(request: web.Request) -> web.Response:
    found = await components(request).readiness.checks()
    checks = {name: "ok" if healthy else "down" for name, healthy in found.items()}
    if all(state == "ok" for state in checks.values()):
        return json_response({"success": True, "data": checks})
    down = [name for name, state in checks.items() if state == "down"]
    error = {"code": "dependency_down", "message": f"{' and '.join(down)} down"}
    return json_response({"success": False, "error": error, "data": checks}, status=503)


async def metrics(request: web.Request) -> web.Response:
    c = components(request)
    # Cluster-wide gauges are read at scrape time; a Redis outage leaves their last value.
    try:
        counts = await c.presence.online_counts()
        c.metrics.online_subjects.labels(kind="user").set(counts.users)
        c.metrics.online_subjects.labels(kind="anon").set(counts.anonymous)
        c.metrics.workers_alive.set(await c.registry.live_workers())
        snapshot = await c.counters.flush_and_read(milliseconds(c.clock.now()))
        c.metrics.cluster_windows.set(snapshot.cache_size)
    except RedisError:
        c.metrics.redis_errors.labels(operation="scrape").inc()
    c.tracker.publish_metrics()
    body = generate_latest(c.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
