"""Inbound Socket.IO payloads, validated by the models of :mod:`presence.contract.events`
before anything acts on them."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from presence.contract.events import Credentials
from presence.contract.fields import MAX_TOKEN_CHARS, Body, problem

__all__ = ["MAX_TOKEN_CHARS", "Credentials", "InvalidPayload"]

_BAD_CREDENTIALS = "invalid_credentials"
P = TypeVar("P", bound=Body)


class InvalidPayload(ValueError):
    def __init__(self, message: str, code: str = "invalid_payload") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _single(args: tuple[Any, ...]) -> Any:
    if len(args) != 1:
        raise InvalidPayload("expected exactly one payload object")
    return args[0]


def _validated(model: type[P], value: Any, code: str = "invalid_payload") -> P:
    if not isinstance(value, dict):
        raise InvalidPayload("the payload must be an object", code)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        field_code, message = problem(exc, model.field_codes)
        # A field with its own code (a status text, say) keeps it; anything else is the
        # event's code.
        own = field_code in model.field_codes.values()
        raise InvalidPayload(message, field_code if own else code) from None


def credentials_from(value: Any) -> Credentials | None:
    """``{token}`` or ``{sessionToken}`` (the token wins when both come); None when neither
    is given."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidPayload("credentials must be an object", _BAD_CREDENTIALS)
    found = _validated(Credentials, value, _BAD_CREDENTIALS)
    if not found.given:
        return None
    if found.token is not None:
        return Credentials(token=found.token)
    return found


def authenticate(args: tuple[Any, ...]) -> Credentials:
    found = credentials_from(_single(args))
    if found is None:
        raise InvalidPayload("token or sessionToken required", _BAD_CREDENTIALS)
    return found


def event_payload(model: type[P], args: tuple[Any, ...]) -> P:
    """An event's one payload object as ``model`` (no payload at all is ``{}``)."""
    return _validated(model, _single(args) if args else {})
