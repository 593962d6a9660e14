"""HTTP request duration by route template and status (SPEC §5)."""

from __future__ import annotations

import time

from aiohttp import web

from presence.api.context import components
from presence.api.errors import Handler


@web.middleware
async def timing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        components(request).metrics.http_duration.labels(
            route=route, method=request.method, status=str(status)
        ).observe(time.perf_counter() - started)
