"""Admin-only maintenance endpoints: cluster stats, status counters, forced status."""

from __future__ import annotations

from aiohttp import web

from presence.api import parsing
from presence.api.context import components
from presence.api.identity import admin
from presence.domain import NotFound, SubjectKind, SubjectRef, milliseconds
from presence.keys import leader_of


async def stats(request: web.Request) -> web.Response:
    await admin(request)
    c = components(request)
    counts = await c.presence.online_counts()
    leader = await c.redis.get(c.keys.leader)
    threshold_min = c.settings.offline_threshold_s / 60
    data = {
        "onlineUsers": counts.users,
        "totalUsers": await c.store.count_users(),
        "anonymousSessions": await c.store.count_participants(),
        "onlineAnonymous": counts.anonymous,
        "offlineThresholdMinutes": int(threshold_min)
        if threshold_min.is_integer()
        else round(threshold_min, 3),
        # Read from the lease key itself: true only while some worker holds it.
        "maintenanceActive": leader is not None,
        "leader": leader_of(leader),
        "workers": await c.registry.live_workers(),
    }
    return web.json_response({"success": True, "data": data})


async def status_metrics(request: web.Request) -> web.Response:
    await admin(request)
    c = components(request)
    snapshot = await c.counters.read(milliseconds(c.clock.now()))
    return web.json_response({"success": True, "data": snapshot.to_json()})


async def reset_status_metrics(request: web.Request) -> web.Response:
    await admin(request)
    c = components(request)
    await c.counters.reset(milliseconds(c.clock.now()))
    snapshot = await c.counters.read(milliseconds(c.clock.now()))
    return web.json_response({"success": True, "data": snapshot.to_json()})


async def user_status(request: web.Request) -> web.Response:
    await admin(request)
    body = await parsing.json_object(request)
    subject_id = parsing.text(body, "userId", max_len=64)
    online = parsing.boolean(body, "isOnline")
    c = components(request)
    if await c.store.get_user(subject_id) is not None:
        subject = SubjectRef(SubjectKind.USER, subject_id)
    elif await c.store.get_participant(subject_id) is not None:
        subject = SubjectRef(SubjectKind.ANONYMOUS, subject_id)
    else:
        raise NotFound("unknown user", "unknown_user")
    record = await c.presence.force_online(subject, online)
    if record is None:
        raise NotFound("unknown user", "unknown_user")
    return web.json_response({"success": True, "data": record.to_json()})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/maintenance/stats", stats)
    app.router.add_get("/maintenance/status-metrics", status_metrics)
    app.router.add_post("/maintenance/status-metrics/reset", reset_status_metrics)
    app.router.add_post("/maintenance/user-status", user_status)
