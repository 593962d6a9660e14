"""One error shape for every failure: ``{"success": false, "error": {code, message}}``."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.exceptions import RedisError

from presence.api.responses import json_response
from presence.domain import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyAttempts,
    Unauthorized,
)
from presence.store.base import StoreError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_DOMAIN_STATUS: list[tuple[type[DomainError], int]] = [
    (InvalidInput, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooManyAttempts, 429),
]
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}

# A dependency that failed mid-request: 503, naming which one (a retry may well succeed).
_UNAVAILABLE = {
    StoreError: ("database_unavailable", "the database is unavailable"),
    RedisError: ("redis_unavailable", "redis is unavailable"),
}


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response(
        {"success": False, "error": {"code": code, "message": message}}, status=status
    )


def _status_of(exc: DomainError) -> int:
    for kind, status in _DOMAIN_STATUS:
        if isinstance(exc, kind):
            return status
    return 400


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except TooManyAttempts as exc:
        response = error_response(429, exc.code, exc.message)
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        return response
    except DomainError as exc:
        return error_response(_status_of(exc), exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 413 else "request body is too large"
        return error_response(exc.status, code, message)
    except (StoreError, RedisError) as exc:
        code, message = _UNAVAILABLE[StoreError if isinstance(exc, StoreError) else RedisError]
        log.warning(message, extra={"path": request.path})
        return error_response(503, code, message)
    except ConnectionResetError:
        # The client went away mid-request (a timeout on its side): nothing is wrong here.
        log.info("client closed the connection", extra={"path": request.path})
        return error_response(400, "client_closed", "the client closed the connection")
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "internal_error", "internal error")
