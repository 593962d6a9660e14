"""The caller's own profile and status, and presence of people the caller shares a
conversation with."""

from __future__ import annotations

from aiohttp import web

from presence.api import parsing
from presence.api.context import components
from presence.api.identity import caller, registered_user
from presence.api.responses import json_response
from presence.api.views import participant_json, user_json
from presence.contract.http import PrivacyBody, StatusBody
from presence.domain import InvalidInput, NotFound
from presence.store.base import ParticipantRecord

MAX_PRESENCE_IDS = 200


async def me(request: web.Request) -> web.Response:
    principal = await caller(request)
    c = components(request)
    found = await c.accounts.profile(principal)
    profile = participant_json(found) if isinstance(found, ParticipantRecord) else user_json(found)
    record = await c.presence.record(principal.subject, viewer=principal.subject)
    return json_response(
        {
            "success": True,
            "data": {**profile, "presence": None if record is None else record.to_json()},
        }
    )


@parsing.takes(StatusBody)
async def set_status(request: web.Request) -> web.Response:
    principal = await caller(request)
    body = await parsing.body(request, StatusBody)
    record = await components(request).choices.set_status(
        principal.subject, body.status, body.text, body.until
    )
    if record is None:
        raise NotFound("subject not found")
    return json_response({"success": True, "data": record.to_json()})


async def privacy(request: web.Request) -> web.Response:
    principal = await registered_user(request)
    found = await components(request).choices.privacy(principal.subject.id)
    if found is None:
        raise NotFound("user not found")
    return json_response({"success": True, "data": {"lastSeen": found.value}})


@parsing.takes(PrivacyBody)
async def set_privacy(request: web.Request) -> web.Response:
    """Guests have no last seen to choose for: only registered users."""
    principal = await registered_user(request)
    body = await parsing.body(request, PrivacyBody)
    if not await components(request).choices.set_privacy(principal.subject.id, body.last_seen):
        raise NotFound("user not found")
    return json_response({"success": True, "data": {"lastSeen": body.last_seen.value}})


async def presence_of(request: web.Request) -> web.Response:
    principal = await registered_user(request)
    raw = request.query.get("ids", "")
    ids = [i for i in (part.strip() for part in raw.split(",")) if i]
    if not ids:
        raise InvalidInput("ids must list at least one id")
    if len(ids) > MAX_PRESENCE_IDS:
        raise InvalidInput(f"ids may list at most {MAX_PRESENCE_IDS} ids")
    c = components(request)
    # Only people the caller shares a conversation with: presence is not a public directory.
    visible = {s.id: s for s in await c.conversations.shared_with(principal)}
    subjects = [visible[i] for i in dict.fromkeys(ids) if i in visible]
    records = await c.presence.records(subjects, viewer=principal.subject)
    return json_response({"success": True, "data": {"users": [r.to_json() for r in records]}})


async def heartbeat(request: web.Request) -> web.Response:
    """A cheap "still here" for clients without a socket: authentication is the activity."""
    await caller(request)
    return json_response({"success": True})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/presence/heartbeat", heartbeat)
    app.router.add_get("/api/users/me", me)
    app.router.add_put("/api/users/me/status", set_status)
    app.router.add_get("/api/users/me/privacy", privacy)
    app.router.add_put("/api/users/me/privacy", set_privacy)
    app.router.add_get("/api/users/presence", presence_of)
