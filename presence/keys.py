"""Every Redis key name, in one place (the scripts that use them are in :mod:`presence.lua`).

Keys share one prefix (``PRESENCE_REDIS_PREFIX``, default ``presence:``) so several deployments
can share a Redis and tests can isolate themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from presence.domain import SubjectRef


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "presence:"

    def throttle(self, subject: SubjectRef) -> str:
        """String holding the owning worker's token; PX = throttle interval."""
        return f"{self.prefix}throttle:{subject.kind.value}:{subject.id}"

    @property
    def windows(self) -> str:
        """Sorted set: subject member -> epoch ms at which its throttle window ends."""
        return f"{self.prefix}windows"

    @property
    def last_activity(self) -> str:
        """Sorted set: subject member -> epoch ms of its latest activity (only ever raised)."""
        return f"{self.prefix}last"

    @property
    def online(self) -> str:
        """Set of subject members marked online."""
        return f"{self.prefix}online"

    def connections(self, member: str) -> str:
        """Hash: socket id -> owning worker id, for every live connection of one subject."""
        return f"{self.prefix}conns:{member}"

    def worker_connections(self, worker_id: str) -> str:
        """Set of ``member|sid`` owned by one worker (to clean up after it, or re-register)."""
        return f"{self.prefix}wconns:{worker_id}"

    @property
    def pending_offline(self) -> str:
        """Sorted set: subject member -> epoch ms its last connection closed (in grace)."""
        return f"{self.prefix}pending"

    @property
    def socketio_channel(self) -> str:
        """Pub/sub channel of the Socket.IO message queue."""
        return f"{self.prefix}socketio"

    def auth_failures(self, scope: str, identity: str) -> str:
        """Counter of failed sign-ins for one address or account (``scope``); PX = the window.
        ``identity`` is a digest, so key names stay short and hold no email address."""
        return f"{self.prefix}authfail:{scope}:{identity}"

    @property
    def counters(self) -> str:
        """Hash of the cluster-wide status counters and ``resetAt`` (epoch ms of the last reset)."""
        return f"{self.prefix}counters"

    @property
    def workers(self) -> str:
        """Sorted set: worker id -> epoch ms at which its liveness expires."""
        return f"{self.prefix}workers"

    def worker(self, worker_id: str) -> str:
        """String holding the worker's incarnation; PX = worker TTL."""
        return f"{self.prefix}worker:{worker_id}"

    @property
    def leader(self) -> str:
        """The maintenance lease: holds the leader's worker id while it is held."""
        return f"{self.prefix}leader"


# Between a subject's member and a socket id in a worker's set of connections: neither a
# member (``kind:id``) nor a Socket.IO sid contains it, so the entry splits back unambiguously.
WORKER_ENTRY_SEPARATOR = "|"


def worker_entry(member: str, sid: str) -> str:
    """One connection in a worker's set: ``member|sid`` (the Lua scripts write the same)."""
    return f"{member}{WORKER_ENTRY_SEPARATOR}{sid}"


def split_worker_entry(entry: str) -> tuple[str, str]:
    member, _, sid = entry.rpartition(WORKER_ENTRY_SEPARATOR)
    return member, sid


def lease_holder(worker_id: str, incarnation: str) -> str:
    """The value of the lease key: who holds it, in which life."""
    return f"{worker_id}|{incarnation}"


def decoded(value: bytes | str) -> str:
    """Redis answers bytes; names and ids are text."""
    return value.decode() if isinstance(value, bytes) else value


def leader_of(value: bytes | str | None) -> str | None:
    """The worker id in a lease value."""
    return None if value is None else decoded(value).split("|", 1)[0]
