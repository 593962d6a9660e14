"""The service API (SPEC §12): other services call it with a service token, never with a
person's credentials, and their calls are never anyone's activity."""

from __future__ import annotations

from aiohttp import web

from presence.api import parsing
from presence.api.context import components
from presence.api.responses import json_response
from presence.auth.authenticator import AuthError
from presence.auth.services import ServicePrincipal, looks_like_service_token
from presence.contract.http import MAX_SERVICE_IDS, ServicePresenceBody
from presence.domain import Forbidden, InvalidInput, Unauthorized

DEFAULT_EVENTS = 100


async def service_caller(request: web.Request, scope: str) -> ServicePrincipal:
    """The calling service, if its token is valid, holds ``scope`` and is within its rate."""
    c = components(request)
    bearer = request.headers.get("Authorization", "")
    scheme, _, token = bearer.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        if request.headers.get("X-Session-Token"):
            raise Forbidden("a guest's session cannot call the service API", "wrong_principal")
        c.metrics.auth_failures.labels(reason="missing").inc()
        raise Unauthorized("a service token is required", "auth_required")
    try:
        if not looks_like_service_token(token):
            await c.authenticator.from_jwt(token)
            raise Forbidden("a user's token cannot call the service API", "wrong_principal")
        service = await c.service_tokens.verify(token)
    except AuthError as exc:
        c.metrics.auth_failures.labels(reason=exc.reason).inc()
        raise Unauthorized(exc.message, exc.reason) from None
    if scope not in service.scopes:
        raise Forbidden(f"this service token lacks the scope {scope}", "missing_scope")
    await c.service_limiter.admit(service.name)
    return service


@parsing.takes(ServicePresenceBody)
async def service_presence(request: web.Request) -> web.Response:
    """Presence of users and guests by id, with whether each has a live connection."""
    await service_caller(request, "presence:read")
    body = await parsing.body(request, ServicePresenceBody)
    if len(body.ids) > MAX_SERVICE_IDS:
        raise InvalidInput(f"ids may list at most {MAX_SERVICE_IDS} ids", "too_many_ids")
    found = await components(request).presence.lookup(body.ids)
    users = [{**record.to_json(), "connected": connected} for record, connected in found]
    return json_response({"success": True, "data": {"users": users}})


async def service_events(request: web.Request) -> web.Response:
    """The change feed after a cursor; waits for news when there is none yet."""
    await service_caller(request, "events:read")
    raw_limit = request.query.get("limit", str(DEFAULT_EVENTS))
    if not raw_limit.isdigit():
        raise InvalidInput("limit must be a whole number", "invalid_limit")
    page = await components(request).feed.read(request.query.get("after"), int(raw_limit))
    return json_response({"success": True, "data": {"events": page.events, "next": page.next}})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/service/presence", service_presence)
    app.router.add_get("/api/service/events", service_events)
