"""Request bodies and path ids, validated by the models of :mod:`presence.contract.http`.

A handler declares the body it reads with :func:`takes` (the OpenAPI document shows exactly
that model) and reads it with :func:`body` after its authentication check, so an anonymous
caller never learns what a valid body looks like.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from pydantic import ValidationError

from presence.contract.fields import MAX_ID_CHARS, Body, problem
from presence.domain import InvalidInput, has_control_characters

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
B = TypeVar("B", bound=Body)


# Every body is a few hundred bytes, except a directory import's member lists.
DEFAULT_MAX_BYTES = 64 * 1024


class DeclaredBody:
    def __init__(self, model: type[Body], optional: bool, max_bytes: int) -> None:
        self.model = model
        self.optional = optional  # an empty body is ``{}``
        self.max_bytes = max_bytes


# Every handler that reads a body, with the model it reads.
DECLARED: dict[Handler, DeclaredBody] = {}


def takes(
    model: type[Body], *, optional: bool = False, max_bytes: int = DEFAULT_MAX_BYTES
) -> Callable[[Handler], Handler]:
    def declare(handler: Handler) -> Handler:
        DECLARED[handler] = DeclaredBody(model, optional, max_bytes)
        return handler

    return declare


async def body(request: web.Request, model: type[B]) -> B:
    declared = DECLARED.get(request.match_info.handler)
    if declared is None or declared.model is not model:
        raise TypeError(f"{request.path}: the handler reads a body it does not declare")
    raw = await _read(request, declared.max_bytes)
    return decode(model, raw, optional=declared.optional)


async def _read(request: web.Request, max_bytes: int) -> bytes:
    """The body, or 413 as soon as it is known to pass the handler's bound (the app's
    ``client_max_size`` bounds the largest of them)."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=length)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


def decode(model: type[B], raw: bytes, *, optional: bool = False) -> B:
    """A body as ``model``, or :class:`InvalidInput` saying what is wrong (never another
    error, whatever the bytes)."""
    if optional and not raw.strip():
        raw = b"{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        code, message = problem(exc, model.field_codes)
        raise InvalidInput(message, code) from None


def path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not 1 <= len(value) <= MAX_ID_CHARS or has_control_characters(value):
        raise InvalidInput(f"{name} is not a valid id")
    return value
