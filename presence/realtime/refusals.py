"""One table from what went wrong to what the client hears and what is counted.

Every path that can refuse a socket something (the handshake, a late ``authenticate``, each
event handler) maps its exception here, so the code, the message and the metric of one kind of
failure are the same wherever it happens.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import RedisError

from presence.auth.authenticator import AuthError
from presence.domain import DomainError, TooManyAttempts
from presence.metrics import Metrics
from presence.realtime.payloads import InvalidPayload
from presence.store.base import StoreError

# What a refusal counts as: the ``outcome`` of presence_socket_events_total.
INVALID = "invalid"
BAD_CREDENTIALS = "auth_failed"
RATE_LIMITED = "auth_rate_limited"
REFUSED = "refused"
UNAVAILABLE = "unavailable"

# Failures the table knows; anything else is a bug and propagates.
KNOWN = (InvalidPayload, AuthError, DomainError, RedisError, StoreError)


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    message: str
    outcome: str

    @property
    def ends_socket(self) -> bool:
        """A socket that keeps guessing credentials past the limit is closed."""
        return self.outcome == RATE_LIMITED


def refusal_for(exc: Exception) -> Refusal:
    if isinstance(exc, InvalidPayload):
        outcome = BAD_CREDENTIALS if exc.code == "invalid_credentials" else INVALID
        return Refusal(exc.code, exc.message, outcome)
    if isinstance(exc, AuthError):
        return Refusal(exc.reason, exc.message, BAD_CREDENTIALS)
    if isinstance(exc, TooManyAttempts):
        return Refusal(exc.code, exc.message, RATE_LIMITED)
    if isinstance(exc, DomainError):
        return Refusal(exc.code, exc.message, REFUSED)
    if isinstance(exc, RedisError | StoreError):
        return Refusal("unavailable", "presence is unavailable, try again", UNAVAILABLE)
    raise TypeError(f"no refusal for {type(exc).__name__}") from exc


def count_authentication(metrics: Metrics, refusal: Refusal) -> None:
    """A refused handshake or ``authenticate``: bad credentials by reason, the rest as socket
    refusals."""
    if refusal.outcome in (BAD_CREDENTIALS, INVALID):
        metrics.auth_failures.labels(reason=refusal.code).inc()
    else:
        metrics.socket_refusals.labels(reason=refusal.outcome).inc()


def count_event(metrics: Metrics, event: str, refusal: Refusal) -> None:
    metrics.socket_events.labels(event=event, outcome=refusal.outcome).inc()
