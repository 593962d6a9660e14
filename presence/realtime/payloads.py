"""Inbound Socket.IO payloads, checked before anything acts on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from presence.domain import ManualStatus, has_control_characters

MAX_TOKEN_CHARS = 4096
MAX_ID_CHARS = 64
_BAD_CREDENTIALS = "invalid_credentials"


class InvalidPayload(ValueError):
    def __init__(self, message: str, code: str = "invalid_payload") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Credentials:
    token: str | None = None
    session_token: str | None = None


def _single(args: tuple[Any, ...]) -> Any:
    if len(args) != 1:
        raise InvalidPayload("expected exactly one payload object")
    return args[0]


def _object(args: tuple[Any, ...]) -> dict[str, Any]:
    value = _single(args)
    if not isinstance(value, dict):
        raise InvalidPayload("the payload must be an object")
    return value


def _string(value: Any, name: str, max_chars: int, code: str = "invalid_payload") -> str:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= max_chars
        or has_control_characters(value)
    ):
        raise InvalidPayload(
            f"{name} must be a non-empty string of at most {max_chars} characters,"
            " without control characters",
            code,
        )
    return value


def credentials_from(value: Any) -> Credentials | None:
    """``{token}`` or ``{sessionToken}``; None when neither is given. A bare ``userId`` is
    not a credential: it would let anyone be anyone (the original's impersonation hole)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidPayload("credentials must be an object", "invalid_credentials")
    token, session = value.get("token"), value.get("sessionToken")
    if token is None and session is None:
        if "userId" in value:
            raise InvalidPayload("userId is not a credential", "invalid_credentials")
        return None
    if token is not None:
        return Credentials(token=_string(token, "token", MAX_TOKEN_CHARS, _BAD_CREDENTIALS))
    return Credentials(
        session_token=_string(session, "sessionToken", MAX_TOKEN_CHARS, _BAD_CREDENTIALS)
    )


def authenticate(args: tuple[Any, ...]) -> Credentials:
    found = credentials_from(_single(args))
    if found is None:
        raise InvalidPayload("token or sessionToken required", "invalid_credentials")
    return found


def presence_set(args: tuple[Any, ...]) -> ManualStatus:
    status = _object(args).get("status")
    try:
        return ManualStatus(status) if isinstance(status, str) else _bad_status()
    except ValueError:
        return _bad_status()


def _bad_status() -> ManualStatus:
    raise InvalidPayload("status must be one of online, away, dnd, invisible")


def conversation_join(args: tuple[Any, ...]) -> str:
    return _string(_object(args).get("conversationId"), "conversationId", MAX_ID_CHARS)


def heartbeat(args: tuple[Any, ...]) -> None:
    if not args:
        return
    payload = _object(args)
    client_time = payload.get("clientTime")
    if client_time is not None and (
        isinstance(client_time, bool) or not isinstance(client_time, int | float | str)
    ):
        raise InvalidPayload("clientTime must be a number or a string")
