"""Cross-origin access for browsers, limited to ``PRESENCE_CORS_ORIGINS``."""

from __future__ import annotations

from aiohttp import web

from presence.api.context import components
from presence.api.errors import Handler

_ALLOWED_HEADERS = "Authorization, Content-Type, X-Session-Token"
_ALLOWED_METHODS = "GET, POST, PUT, OPTIONS"
_PREFLIGHT_MAX_AGE_S = "600"


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    allowed = components(request).settings.cors_origins
    # Socket.IO answers its own CORS; a second header would make browsers refuse both.
    if request.path.startswith("/socket.io/"):
        return await handler(request)
    if origin is None or not ("*" in allowed or origin in allowed):
        return await handler(request)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = _ALLOWED_METHODS
        response.headers["Access-Control-Allow-Headers"] = _ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = _PREFLIGHT_MAX_AGE_S
    else:
        response = await handler(request)
    # Tokens travel in headers, never cookies: no credentials mode is needed.
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Vary"] = "Origin"
    return response
