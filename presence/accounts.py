"""Registration, login, anonymous joins through share links, and the operator's tools."""

from __future__ import annotations

from dataclasses import dataclass

from presence.auth.passwords import Passwords
from presence.auth.tokens import JwtCodec, new_session_token, session_token_hash
from presence.clock import Clock
from presence.domain import (
    Conflict,
    NotFound,
    Principal,
    Role,
    SubjectKind,
    SubjectRef,
    Unauthorized,
    from_epoch,
    to_epoch,
)
from presence.profiles import Profiles
from presence.store.base import DuplicateError, ParticipantRecord, Store, UserRecord


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    user: UserRecord


@dataclass(frozen=True, slots=True)
class GuestSession:
    session_token: str
    participant: ParticipantRecord


@dataclass(frozen=True, slots=True)
class Population:
    users: int
    guests: int  # active anonymous participants


class Accounts:
    def __init__(
        self,
        store: Store,
        passwords: Passwords,
        codec: JwtCodec,
        clock: Clock,
        profiles: Profiles | None = None,
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._codec = codec
        self._clock = clock
        # Who is in a conversation, as workers cache it (None: the operator's tools, which
        # never add guests).
        self._profiles = profiles

    async def create_user(
        self, *, username: str, email: str, password: str, role: Role = Role.USER
    ) -> UserRecord:
        password_hash = await self._passwords.hash(password)
        try:
            return await self._store.create_user(
                username=username,
                email=email,
                password_hash=password_hash,
                role=role,
                now=from_epoch(self._clock.now()),
            )
        except DuplicateError:
            raise Conflict("an account with this email already exists", "email_taken") from None

    async def register(self, *, username: str, email: str, password: str) -> Session:
        user = await self.create_user(username=username, email=email, password=password)
        return Session(self._codec.issue(user.id), user)

    async def login(self, *, email: str, password: str) -> Session:
        user = await self._store.find_user_by_email(email)
        # Verify even when the account is unknown, so both failures take the same time.
        ok = await self._passwords.verify(None if user is None else user.password_hash, password)
        # A user the platform provisioned has no password here: it logs in at the platform.
        if user is None or not user.password_hash or not ok:
            raise Unauthorized("wrong email or password", "invalid_credentials")
        if not user.is_active:
            raise Unauthorized("account is deactivated", "inactive_user")
        return Session(self._codec.issue(user.id), user)

    async def token_for(self, email: str) -> str:
        user = await self._store.find_user_by_email(email)
        if user is None:
            raise NotFound(f"no account with email {email}")
        return self._codec.issue(user.id)

    async def join(self, *, link_id: str, nickname: str) -> GuestSession:
        link = await self._store.get_share_link(link_id)
        if link is None or not link.is_active:
            raise NotFound("share link not found", "link_not_found")
        if link.expires_at is not None and to_epoch(link.expires_at) <= self._clock.now():
            raise Unauthorized("share link has expired", "link_expired")
        token = new_session_token()
        participant = await self._store.create_participant(
            conversation_id=link.conversation_id,
            link_id=link.id,
            nickname=nickname,
            token_hash=session_token_hash(token),
            now=from_epoch(self._clock.now()),
        )
        if self._profiles is not None:
            await self._profiles.guests_changed(link.conversation_id)
        return GuestSession(token, participant)

    async def profile(self, principal: Principal) -> UserRecord | ParticipantRecord:
        """The caller's own account or guest record."""
        found: UserRecord | ParticipantRecord | None
        if principal.subject.is_anonymous:
            found = await self._store.get_participant(principal.subject.id)
        else:
            found = await self._store.get_user(principal.subject.id)
        if found is None:
            raise NotFound("account not found")
        return found

    async def subject(self, subject_id: str) -> SubjectRef | None:
        """A user or a guest by id (ids of both kinds come from one generator, so one id
        names at most one of them)."""
        if await self._store.get_user(subject_id) is not None:
            return SubjectRef(SubjectKind.USER, subject_id)
        if await self._store.get_participant(subject_id) is not None:
            return SubjectRef(SubjectKind.ANONYMOUS, subject_id)
        return None

    async def population(self) -> Population:
        return Population(
            users=await self._store.count_users(),
            guests=await self._store.count_participants(),
        )
