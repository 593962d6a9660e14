"""Admin-only maintenance endpoints: cluster stats, status counters, forced status."""

from __future__ import annotations

from aiohttp import web

from presence.api import parsing
from presence.api.context import components
from presence.api.identity import admin
from presence.api.responses import json_response
from presence.contract.http import UserStatusBody
from presence.domain import NotFound, milliseconds


async def stats(request: web.Request) -> web.Response:
    await admin(request)
    c = components(request)
    counts = await c.presence.online_counts()
    population = await c.accounts.population()
    leader = await c.registry.leader()
    threshold_min = c.settings.offline_threshold_s / 60
    data = {
        "onlineUsers": counts.users,
        "totalUsers": population.users,
        "anonymousSessions": population.guests,
        "onlineAnonymous": counts.anonymous,
        "offlineThresholdMinutes": int(threshold_min)
        if threshold_min.is_integer()
        else round(threshold_min, 3),
        # Read from the lease key itself: true only while some worker holds it.
        "maintenanceActive": leader is not None,
        "leader": leader,
        "workers": await c.registry.live_workers(),
    }
    return json_response({"success": True, "data": data})


async def status_metrics(request: web.Request) -> web.Response:
    await admin(request)
    c = components(request)
    snapshot = await c.counters.flush_and_read(milliseconds(c.clock.now()))
    return json_response({"success": True, "data": snapshot.to_json()})


async def reset_status_metrics(request: web.Request) -> web.Response:
    await admin(request)
    c = components(request)
    await c.counters.reset(milliseconds(c.clock.now()))
    snapshot = await c.counters.flush_and_read(milliseconds(c.clock.now()))
    return json_response({"success": True, "data": snapshot.to_json()})


@parsing.takes(UserStatusBody)
async def user_status(request: web.Request) -> web.Response:
    await admin(request)
    body = await parsing.body(request, UserStatusBody)
    subject_id, online = body.user_id, body.is_online
    c = components(request)
    subject = await c.accounts.subject(subject_id)
    if subject is None:
        raise NotFound("unknown user", "unknown_user")
    record = await c.presence.force_online(subject, online)
    if record is None:
        raise NotFound("unknown user", "unknown_user")
    return json_response({"success": True, "data": record.to_json()})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/maintenance/stats", stats)
    app.router.add_get("/maintenance/status-metrics", status_metrics)
    app.router.add_post("/maintenance/status-metrics/reset", reset_status_metrics)
    app.router.add_post("/maintenance/user-status", user_status)
