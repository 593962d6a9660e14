"""Every HTTP request body and response payload of the REST API (SPEC §6.2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field, Strict

from presence.contract.fields import (
    Address,
    Body,
    Email,
    Id,
    Moment,
    Name,
    NewPassword,
    Password,
    Shape,
    StatusText,
    StrictBool,
    Title,
)
from presence.domain import LastSeenApprox, LastSeenPrivacy, ManualStatus, Role, Status

# A week: long enough for an invitation, short enough that a forgotten link dies.
MAX_LINK_LIFETIME_S = 7 * 24 * 3600.0
MAX_CONVERSATION_MEMBERS = 1000
Count = Annotated[int, Field(ge=0)]

# -- requests -----------------------------------------------------------------------------------


class RegisterBody(Body):
    username: Name
    email: Email
    password: NewPassword


class LoginBody(Body):
    # Any address an account might have been created with; the lookup decides.
    email: Address
    password: Password


class JoinBody(Body):
    nickname: Name


_CHOICE_CODES = {"text": "invalid_status_text", "until": "invalid_until"}


class StatusBody(Body):
    """A manual status, optionally with a text and the moment it ends by itself."""

    field_codes: ClassVar[dict[str, str]] = _CHOICE_CODES
    status: ManualStatus
    text: StatusText | None = None
    until: Moment | None = None


class PrivacyBody(Body):
    field_codes: ClassVar[dict[str, str]] = {"lastSeen": "invalid_privacy"}
    last_seen: LastSeenPrivacy


class NewConversationBody(Body):
    title: Title
    member_ids: Annotated[list[Id], Field(max_length=MAX_CONVERSATION_MEMBERS)]


class ShareLinkBody(Body):
    expires_in_seconds: Annotated[float, Strict(), Field(ge=1, le=MAX_LINK_LIFETIME_S)] | None = (
        None
    )


MAX_SERVICE_IDS = 1000


class ServicePresenceBody(Body):
    # More than MAX_SERVICE_IDS is refused with its own code (too_many_ids), by the handler.
    ids: Annotated[list[Id], Field(min_length=1, json_schema_extra={"maxItems": MAX_SERVICE_IDS})]


MAX_DIRECTORY_MEMBERS = 100_000
MAX_BATCH_CONVERSATIONS = 1000


class DirectoryUserBody(Body):
    username: Name
    is_active: StrictBool = True


class DirectoryConversationBody(Body):
    title: Title
    # Each a URL-safe id; more than the maximum is refused with its own code (too_many_members).
    member_ids: Annotated[list[Id], Field(json_schema_extra={"maxItems": MAX_DIRECTORY_MEMBERS})]


class DirectoryConversation(DirectoryConversationBody):
    id: Id


class DirectoryBatchBody(Body):
    conversations: Annotated[
        list[DirectoryConversation], Field(min_length=1, max_length=MAX_BATCH_CONVERSATIONS)
    ]


class UserStatusBody(Body):
    user_id: Id
    is_online: StrictBool


# -- responses ----------------------------------------------------------------------------------


class Presence(Shape):
    """One subject's presence as others see it; the same shape in every payload."""

    user_id: str
    username: str
    is_anonymous: bool
    is_online: bool
    status: Status
    last_active_at: datetime | None
    last_seen: datetime | None
    # Instead of lastSeen when the subject shows it approximately (or the viewer hides its own).
    last_seen_approx: LastSeenApprox | None
    status_text: str | None
    status_until: datetime | None
    # Away because idle while connected (its manual status is online).
    auto_away: bool


class Privacy(Shape):
    last_seen: LastSeenPrivacy


class ServicePresence(Presence):
    """What a service sees: the public record, and whether the subject has a live connection
    (invisible included: a push service must not push to someone who is reading)."""

    connected: bool


class ServicePresenceList(Shape):
    users: list[ServicePresence]


class DirectoryOutcome(Shape):
    created: bool
    added: Count
    removed: Count


class DirectoryBatchOutcome(Shape):
    conversations: Count
    created: Count
    added: Count
    removed: Count


class FeedEvent(Shape):
    """One announced transition, as everyone but the subject saw it."""

    id: str
    subject_id: str
    is_anonymous: bool
    status: Status
    is_online: bool
    at: datetime


class EventPage(Shape):
    events: list[FeedEvent]
    # The cursor to ask with next time (the last event's id, or the one asked with).
    next: str


class OwnPresence(Presence):
    """The caller's own record also says what it chose, which others never see."""

    manual_status: ManualStatus


# Lists show everyone's public record, and the caller's own record where the caller appears.
AnyPresence = Presence | OwnPresence


class User(Shape):
    id: str
    username: str
    email: str
    role: Role
    created_at: datetime | None


class Participant(Shape):
    id: str
    nickname: str
    conversation_id: str
    is_anonymous: Literal[True]


class UserProfile(User):
    presence: OwnPresence | None


class ParticipantProfile(Participant):
    presence: OwnPresence | None


class Conversation(Shape):
    id: str
    title: str
    member_ids: list[str]
    created_at: datetime | None
    members: list[AnyPresence]


class ShareLink(Shape):
    id: str
    conversation_id: str
    expires_at: datetime | None


class PresenceList(Shape):
    users: list[AnyPresence]


class ConversationPresence(Shape):
    conversation_id: str
    users: list[AnyPresence]
    online: Count
    total: Count
    # Asked with ``limit`` (or a large conversation): the cursor of the next page, online
    # members first; None after the last page.
    next: str | None = None


class StatusMetrics(Shape):
    total_requests: Count
    throttled_requests: Count
    successful_updates: Count
    failed_updates: Count
    cache_size: Count
    throttle_rate: Annotated[float, Field(ge=0, le=100)]


class Stats(Shape):
    online_users: Count
    total_users: Count
    anonymous_sessions: Count
    online_anonymous: Count
    offline_threshold_minutes: float
    maintenance_active: bool
    leader: str | None
    workers: Count


class Health(Shape):
    status: Literal["ok"]
    worker: str


Check = Literal["ok", "down"]


class Readiness(Shape):
    redis: Check
    mongodb: Check
    pubsub: Check


class Session(Shape):
    success: Literal[True]
    token: str
    user: User


class Joined(Shape):
    success: Literal[True]
    session_token: str
    participant: Participant


class Acknowledged(Shape):
    success: Literal[True]


class ErrorDetail(Shape):
    code: str
    message: str


class Error(Shape):
    success: Literal[False]
    error: ErrorDetail
    data: dict[str, str] | None = None
