"""Request bodies and query strings, checked field by field into clear 400 errors."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from presence.domain import InvalidInput, has_control_characters

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,63}$")


async def json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}`` when ``optional``."""
    raw = await request.read()  # bounded by the app's client_max_size (413 beyond it)
    if not raw.strip() and optional:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("request body is not valid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object", "invalid_json")
    return body


def text(body: dict[str, Any], name: str, *, min_len: int = 1, max_len: int = 200) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    value = value.strip()
    if not min_len <= len(value) <= max_len:
        raise InvalidInput(f"{name} must be {min_len} to {max_len} characters long")
    if has_control_characters(value):
        raise InvalidInput(f"{name} must not contain control characters")
    return value


def secret(body: dict[str, Any], name: str, *, min_len: int, max_len: int = 256) -> str:
    """Like :func:`text`, but never stripped: spaces in a password are part of it."""
    value = body.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if not min_len <= len(value) <= max_len:
        raise InvalidInput(f"{name} must be {min_len} to {max_len} characters long")
    return value


def email(body: dict[str, Any], name: str = "email") -> str:
    value = text(body, name, max_len=254)
    if not _EMAIL.match(value):
        raise InvalidInput(f"{name} is not a valid email address")
    return value


def boolean(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false")
    return value


def string_list(body: dict[str, Any], name: str, *, max_items: int) -> list[str]:
    value = body.get(name)
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v and not has_control_characters(v) for v in value
    ):
        raise InvalidInput(f"{name} must be a list of non-empty strings without control characters")
    if len(value) > max_items:
        raise InvalidInput(f"{name} has more than {max_items} items")
    return list(value)


def optional_seconds(body: dict[str, Any], name: str, *, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number of seconds")
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low:g} and {high:g}")
    return float(value)


def path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not 1 <= len(value) <= 64 or has_control_characters(value):
        raise InvalidInput(f"{name} is not a valid id")
    return value
