"""Who is calling: ``Authorization: Bearer <jwt>`` or ``X-Session-Token``. Every authenticated
request is activity (SPEC §4) unless ``PRESENCE_TRACK_REQUESTS`` is off; refused credentials have
no presence side effect at all."""

from __future__ import annotations

from aiohttp import web

from presence.addresses import client_address
from presence.api.context import PRINCIPAL, cached_principal, components
from presence.auth.authenticator import AuthError
from presence.auth.services import looks_like_service_token
from presence.domain import Forbidden, Principal, Unauthorized


async def caller(request: web.Request) -> Principal:
    found = cached_principal(request)
    if found is not None:
        return found
    c = components(request)
    bearer = request.headers.get("Authorization")
    session = request.headers.get("X-Session-Token")
    try:
        if bearer is not None:
            scheme, _, token = bearer.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("bad_scheme", "expected 'Authorization: Bearer <token>'")
            if looks_like_service_token(token.strip()):
                await c.service_tokens.verify(token.strip())
                raise Forbidden("a service token cannot act as a person", "wrong_principal")
            principal = await c.authenticator.from_jwt(token.strip())
        elif session is not None:
            principal = await c.authenticator.from_session_token(session.strip())
        else:
            raise AuthError("missing", "authentication required")
    except AuthError as exc:
        c.metrics.auth_failures.labels(reason=exc.reason).inc()
        code = "auth_required" if exc.reason == "missing" else exc.reason
        raise Unauthorized(exc.message, code) from None
    if (
        c.settings.track_requests
        and (rest := c.choices.user_activity(principal.subject)) is not None
    ):
        await rest
    request[PRINCIPAL] = principal
    return principal


async def registered_user(request: web.Request) -> Principal:
    principal = await caller(request)
    if principal.subject.is_anonymous:
        raise Forbidden("only registered users can do this", "registered_user_required")
    return principal


async def admin(request: web.Request) -> Principal:
    """Maintenance is operational traffic: checked, but never counted as activity."""
    c = components(request)
    bearer = request.headers.get("Authorization", "")
    scheme, _, token = bearer.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        c.metrics.auth_failures.labels(reason="missing").inc()
        raise Unauthorized("admin token required", "auth_required")
    try:
        if looks_like_service_token(token.strip()):
            await c.service_tokens.verify(token.strip())
            raise Forbidden("a service token cannot act as a person", "wrong_principal")
        principal = await c.authenticator.from_jwt(token.strip())
    except AuthError as exc:
        c.metrics.auth_failures.labels(reason=exc.reason).inc()
        raise Unauthorized(exc.message, exc.reason) from None
    if not principal.is_admin:
        raise Forbidden("admin role required", "admin_required")
    return principal


def request_address(request: web.Request) -> str:
    """The client's address, through the trusted proxies (``PRESENCE_TRUSTED_PROXIES``)."""
    return client_address(
        request.remote,
        request.headers.get("X-Forwarded-For"),
        components(request).settings.trusted_proxies,
    )
