"""Every Redis key name, in one place (the scripts that use them are in :mod:`presence.lua`).

Keys share one prefix (``PRESENCE_REDIS_PREFIX``, default ``presence:``) so several deployments
can share a Redis and tests can isolate themselves.

Redis Cluster runs a script or a transaction only on keys of one hash slot. So the state of a
subject lives in one **bucket**: its throttle window, connections and grace, and its entries in
the bucket's online set, last-activity and pending-offline sorted sets and throttle-window
index, all under the bucket's hash tag (``presence:{3}:online``). Every script a transition
runs touches one bucket; readers of a cluster-wide collection (the sweep, the online count, a
dead worker's connections) visit every bucket. ``PRESENCE_REDIS_BUCKETS`` sets how many
(default 16 in Cluster mode, 1 otherwise): more buckets spread the collections over more
shards, fewer make those readers cheaper.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

from presence.domain import SubjectRef


@dataclass(frozen=True, slots=True)
class Bucket:
    """The keys of one bucket: ``tag`` is its prefix with the hash tag, ``presence:{3}:``."""

    tag: str

    def throttle(self, member: str) -> str:
        """String holding the owning worker's token; PX = throttle interval."""
        return f"{self.tag}throttle:{member}"

    @property
    def windows(self) -> str:
        """Sorted set: subject member -> epoch ms at which its throttle window ends."""
        return f"{self.tag}windows"

    @property
    def last_activity(self) -> str:
        """Sorted set: subject member -> epoch ms of its latest activity (only ever raised)."""
        return f"{self.tag}last"

    @property
    def online(self) -> str:
        """Set of subject members marked online."""
        return f"{self.tag}online"

    @property
    def pending_offline(self) -> str:
        """Sorted set: subject member -> epoch ms its last connection closed (in grace)."""
        return f"{self.tag}pending"

    @property
    def last_seen(self) -> str:
        """Sorted set: subject member -> epoch ms it last went offline (only ever raised): the
        ``lastSeen`` an announcement gives, without asking the database."""
        return f"{self.tag}seen"

    @property
    def unwritten(self) -> str:
        """Sorted set: subject member -> epoch ms of an offline decided here and not yet in the
        database (the journal of the write-behind queue, for a worker that dies)."""
        return f"{self.tag}unwritten"

    @property
    def generations(self) -> str:
        """Hash: subject member -> generation of what workers cache of it (name, manual status,
        conversations), raised at every change, so a worker's copy is checked in the same
        round trip as the live state."""
        return f"{self.tag}gen"

    @property
    def status_ends(self) -> str:
        """Sorted set: subject member -> epoch ms its custom status ends (the schedule every
        worker reads; the database has the same ends, for a Redis that lost it)."""
        return f"{self.tag}ends"

    @property
    def user_input(self) -> str:
        """Sorted set: subject member -> epoch ms of its latest user activity (not transport
        heartbeats), while it is not away: where automatic away finds the idle."""
        return f"{self.tag}input"

    @property
    def away(self) -> str:
        """Set of subject members away automatically (idle while connected)."""
        return f"{self.tag}away"

    def connections(self, member: str) -> str:
        """Hash: socket id -> owning worker id, for every live connection of one subject."""
        return f"{self.connections_prefix}{member}"

    @property
    def connections_prefix(self) -> str:
        """What a script prepends to a member to name its connections hash."""
        return f"{self.tag}conns:"

    def worker_connections(self, worker_id: str) -> str:
        """Set of ``member|sid`` one worker owns in this bucket (to clean up after it)."""
        return f"{self.tag}wconns:{worker_id}"

    def route(self, room: str) -> str:
        """Set of the workers with at least one local socket in a room: where the routed
        message queue sends what is addressed to it."""
        return f"{self.route_prefix}{room}"

    @property
    def route_prefix(self) -> str:
        """What a script prepends to a room to name its route set."""
        return f"{self.tag}route:"

    def worker_routes(self, worker_id: str) -> str:
        """Set of the rooms of this bucket one worker is routed for (to clean up after it)."""
        return f"{self.tag}wroutes:{worker_id}"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "presence:"
    buckets: int = 1

    def bucket(self, member: str) -> Bucket:
        """The bucket of a subject: the same on every worker (CRC-32, not Python's hash)."""
        index = zlib.crc32(member.encode()) % self.buckets if self.buckets > 1 else 0
        return _bucket(self.prefix, index)

    def every_bucket(self) -> list[Bucket]:
        return [_bucket(self.prefix, index) for index in range(self.buckets)]

    def throttle(self, subject: SubjectRef) -> str:
        return self.bucket(subject.member).throttle(subject.member)

    def connections(self, subject: SubjectRef) -> str:
        return self.bucket(subject.member).connections(subject.member)

    @property
    def socketio_channel(self) -> str:
        """The one pub/sub channel of the broadcast message queue (a shard channel in Cluster
        mode)."""
        return f"{self.prefix}socketio"

    def worker_channel(self, worker_id: str) -> str:
        """The channel one worker listens on with the routed message queue: its own hash tag,
        so in Cluster mode the workers' channels spread over the shards."""
        return f"{self.prefix}socketio:{{w:{worker_id}}}"

    def auth_failures(self, scope: str, identity: str) -> str:
        """Counter of failed sign-ins for one address or account (``scope``); PX = the window.
        ``identity`` is a digest, so key names stay short and hold no email address."""
        return f"{self.prefix}authfail:{scope}:{identity}"

    @property
    def events(self) -> str:
        """The change feed: a stream of every announced transition (presence.feed)."""
        return f"{self.prefix}events"

    def service_calls(self, name: str, second: int) -> str:
        """Calls of one service token within one second (expires after two)."""
        return f"{self.prefix}svccalls:{name}:{second}"

    @property
    def counters(self) -> str:
        """Hash of the cluster-wide status counters and ``resetAt`` (epoch ms of the last reset)."""
        return f"{self.prefix}counters"

    @property
    def workers(self) -> str:
        """Sorted set: worker id -> epoch ms at which its liveness expires. Shares the hash tag
        of the worker keys: one script beats both."""
        return f"{self.prefix}{{workers}}:live"

    def worker(self, worker_id: str) -> str:
        """String holding the worker's incarnation; PX = worker TTL."""
        return f"{self.prefix}{{workers}}:worker:{worker_id}"

    def room_online(self, conversation_id: str) -> str:
        """Sorted set (every score 0, so it reads in member order) of the members of a large
        conversation others see online, plus :data:`ROOM_SENTINEL` once it was counted: its
        online count, kept at every transition, and the online first pages of its presence.
        Expires, so it is counted again from the live states now and then."""
        return f"{self.prefix}{{room:{conversation_id}}}:online"

    def room_counting(self, conversation_id: str, token: str) -> str:
        """Where one worker counts a large conversation before it becomes the count (same
        hash tag: one RENAMENX publishes it)."""
        return f"{self.prefix}{{room:{conversation_id}}}:counting:{token}"

    def room_count_lock(self, conversation_id: str) -> str:
        """Held (PX) by the one worker counting a large conversation right now."""
        return f"{self.prefix}{{room:{conversation_id}}}:countlock"

    def room_told(self, conversation_id: str) -> str:
        """Set for a second after the conversation's count was sent to its room (NX): at most
        one ``presence:count`` per second, cluster-wide."""
        return f"{self.prefix}{{room:{conversation_id}}}:told"

    @property
    def rooms_changed(self) -> str:
        """Set of the large conversations whose count changed since it was last sent."""
        return f"{self.prefix}roomschanged"

    @property
    def leader(self) -> str:
        """The maintenance lease: holds the leader's worker id while it is held."""
        return f"{self.prefix}leader"


# The member of every counted large room's online set that is no subject (``kind:id`` always
# has a colon): the set exists, and so is counted, even while nobody in it is online.
ROOM_SENTINEL = "~counted"

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


@functools.lru_cache(maxsize=1024)
def _bucket(prefix: str, index: int) -> Bucket:
    """One object per bucket: a read of many subjects asks for their buckets many times."""
    return Bucket(f"{prefix}{{{index}}}:")
