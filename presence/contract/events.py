"""Every Socket.IO payload (SPEC §6.3): what a client may send, and what it hears."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, model_validator

from presence.contract.fields import Body, Id, Shape, Token
from presence.contract.http import AnyPresence, Count, StatusBody

# -- inbound ------------------------------------------------------------------------------------


class Credentials(Body):
    """``{token}`` or ``{sessionToken}``, in the handshake's ``auth`` or an ``authenticate``
    event. A bare ``userId`` is not a credential: it would let anyone be anyone."""

    token: Token | None = None
    session_token: Token | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_impersonation(cls, value: Any) -> Any:
        if (
            isinstance(value, dict)
            and "userId" in value
            and not (value.keys() & {"token", "sessionToken"})
        ):
            raise ValueError("userId is not a credential")
        return value

    @property
    def given(self) -> bool:
        return self.token is not None or self.session_token is not None


class PresenceSet(StatusBody):
    """``presence:set``: the same choice as ``PUT /api/users/me/status``."""


class Activity(Body):
    """User input on the client (at most every 30 s): not a transport heartbeat."""


MAX_SUBSCRIBED = 200


class Subscribe(Body):
    """The subjects whose ``user:status`` this socket hears from now on (replacing the list it
    had), wherever they are: members of a large conversation are heard only so. More than
    :data:`MAX_SUBSCRIBED` is refused with ``too_many_ids``."""

    ids: Annotated[list[Id], Field(json_schema_extra={"maxItems": MAX_SUBSCRIBED})]


class Unsubscribe(Body):
    """Hear no subscribed subject any more."""


class ConversationJoin(Body):
    conversation_id: Id


class Heartbeat(Body):
    client_time: Annotated[float, Strict()] | Annotated[str, Strict()] | None = None


# -- outbound -----------------------------------------------------------------------------------


class AuthenticatedUser(Shape):
    id: str
    username: str
    is_anonymous: bool


class Authenticated(Shape):
    success: Literal[True]
    user: AuthenticatedUser


class PresenceSnapshot(Shape):
    users: list[AnyPresence]
    # True when it replaces what the socket knew: its worker may have missed transitions
    # (its pub/sub listener was interrupted), so the client starts again from this.
    resync: bool = False


class PresenceState(Shape):
    conversation_id: str
    users: list[AnyPresence]


class PresenceCount(Shape):
    """A large conversation's online count, sent to its room at most once a second while it
    changes (and to a socket that joins it)."""

    conversation_id: str
    online: Count
    total: Count


class PresenceSubscribed(Shape):
    """The answer to ``presence:subscribe``: the subjects now followed, as the socket sees
    them (ids it may not follow are left out)."""

    users: list[AnyPresence]


class HeartbeatAck(Shape):
    server_time: datetime | None


class SocketError(Shape):
    code: Annotated[str, Field(min_length=1)]
    message: str


INBOUND: dict[str, type[Body]] = {
    "authenticate": Credentials,
    "presence:set": PresenceSet,
    "conversation:join": ConversationJoin,
    "heartbeat": Heartbeat,
    "activity": Activity,
    "presence:subscribe": Subscribe,
    "presence:unsubscribe": Unsubscribe,
}
# user:status carries one presence record, public or the subject's own.
OUTBOUND: dict[str, Any] = {
    "authenticated": Authenticated,
    "presence:snapshot": PresenceSnapshot,
    "presence:state": PresenceState,
    "presence:count": PresenceCount,
    "presence:subscribed": PresenceSubscribed,
    "user:status": AnyPresence,
    "heartbeat:ack": HeartbeatAck,
    "error": SocketError,
}
