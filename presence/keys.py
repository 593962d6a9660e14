"""Every Redis key name and every Lua script, in one place.

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


def lease_holder(worker_id: str, incarnation: str) -> str:
    """The value of the lease key: who holds it, in which life."""
    return f"{worker_id}|{incarnation}"


def decoded(value: bytes | str) -> str:
    """Redis answers bytes; names and ids are text."""
    return value.decode() if isinstance(value, bytes) else value


def leader_of(value: bytes | str | None) -> str | None:
    """The worker id in a lease value."""
    return None if value is None else decoded(value).split("|", 1)[0]


# Was the subject online a moment ago? Marked online, and a live connection, a connection that
# closed within the grace period, or activity fresher than the threshold. Shared by the scripts
# below so that every decision applies the same rule as presence.policy.is_online.
# Uses KEYS online/conns/pending/last and the locals member, now, threshold.
_WAS_ONLINE = """
local function was_online(online, conns, pending, last, member, now, threshold)
  if redis.call('SISMEMBER', online, member) == 0 then return 0 end
  if redis.call('HLEN', conns) > 0 then return 1 end
  if redis.call('ZSCORE', pending, member) then return 1 end
  local prev = redis.call('ZSCORE', last, member)
  if prev and tonumber(prev) >= now - threshold then return 1 end
  return 0
end
"""

# Record one activity that missed the local cache: claim the throttle window, raise the last
# activity, mark online. One round trip, atomic, so exactly one worker sees each transition.
# KEYS[1] throttle key  KEYS[2] windows  KEYS[3] last activity  KEYS[4] online set
# KEYS[5] the subject's connections  KEYS[6] pending offline
# ARGV[1] token  ARGV[2] interval ms  ARGV[3] member  ARGV[4] now ms  ARGV[5] threshold ms
# Returns {won (0|1), window ms left, became online (0|1)}.
ACTIVITY = (
    _WAS_ONLINE
    + """
local now = tonumber(ARGV[4])
local interval = tonumber(ARGV[2])
local won = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', interval)
local left
if won then
  redis.call('ZADD', KEYS[2], now + interval, ARGV[3])
  left = interval
else
  left = redis.call('PTTL', KEYS[1])
end
local was = was_online(KEYS[4], KEYS[5], KEYS[6], KEYS[3], ARGV[3], now, tonumber(ARGV[5]))
redis.call('ZADD', KEYS[3], 'GT', now, ARGV[3])
redis.call('SADD', KEYS[4], ARGV[3])
if won then won = 1 else won = 0 end
return {won, left, 1 - was}
"""
)

# A connection of a subject authenticated on a worker.
# KEYS[1] the subject's connections  KEYS[2] the worker's connections  KEYS[3] online set
# KEYS[4] last activity  KEYS[5] pending offline
# ARGV[1] sid  ARGV[2] worker id  ARGV[3] member  ARGV[4] now ms  ARGV[5] threshold ms
# Returns 1 when this connection made the subject online (its first anywhere), else 0.
CONNECT = (
    _WAS_ONLINE
    + """
local now = tonumber(ARGV[4])
local was = was_online(KEYS[3], KEYS[1], KEYS[5], KEYS[4], ARGV[3], now, tonumber(ARGV[5]))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3] .. '|' .. ARGV[1])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], 'GT', now, ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[3])
return 1 - was
"""
)

# A connection closed. When it was the subject's last one anywhere, the subject enters the
# grace period: it goes offline unless a connection comes back before the grace ends.
# KEYS[1] the subject's connections  KEYS[2] the worker's connections  KEYS[3] pending offline
# KEYS[4] last activity   ARGV[1] sid  ARGV[2] member  ARGV[3] now ms
# Returns 1 when that was the last connection, else 0.
DISCONNECT = """
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2] .. '|' .. ARGV[1])
if removed == 1 and redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
  redis.call('ZADD', KEYS[4], 'GT', ARGV[3], ARGV[2])
  return 1
end
return 0
"""

# The grace period of a subject's last close has ended. Idempotent: of several workers finishing
# the same close, exactly one gets 1 back and announces it.
# KEYS[1] the subject's connections  KEYS[2] pending offline  KEYS[3] online set
# ARGV[1] member  ARGV[2] epoch ms of the close being finished
# Returns 1 when the subject went offline now, else 0 (reconnected, or already finished).
FINISH_OFFLINE = """
local closed = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not closed or tonumber(closed) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
return redis.call('SREM', KEYS[3], ARGV[1])
"""

# Renew the maintenance lease, only while this worker still holds it.
# KEYS[1] leader   ARGV[1] holder token   ARGV[2] ttl ms   Returns 1 when renewed, else 0.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Give the lease back (graceful shutdown), only if this worker holds it.
# KEYS[1] leader   ARGV[1] holder token
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# A worker's liveness beat. Returns 1 when the worker's key was still there, 0 when Redis had
# forgotten it (restart, flush, or the worker was taken for dead): the worker then registers
# its live connections again.
# KEYS[1] worker key  KEYS[2] workers   ARGV[1] incarnation  ARGV[2] ttl ms  ARGV[3] worker id
# ARGV[4] now ms
WORKER_BEAT = """
local known = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[2]), ARGV[3])
return known
"""

# Take offline the subjects of a batch that are marked online, have no connection, are not in
# a grace period and were last active before the cutoff. State-conditional, so two sweepers
# running at once take each subject offline once.
# KEYS[1] online  KEYS[2] last activity  KEYS[3] pending offline
# ARGV[1] cutoff ms  ARGV[2] prefix of the connection hashes  ARGV[3..] members
# Returns a flat list: member, last activity ms, member, last activity ms, ...
TAKE_QUIET_OFFLINE = """
local taken = {}
local cutoff = tonumber(ARGV[1])
for i = 3, #ARGV do
  local member = ARGV[i]
  if redis.call('SISMEMBER', KEYS[1], member) == 1
      and redis.call('HLEN', ARGV[2] .. member) == 0
      and not redis.call('ZSCORE', KEYS[3], member) then
    local last = redis.call('ZSCORE', KEYS[2], member)
    if not last or tonumber(last) < cutoff then
      redis.call('SREM', KEYS[1], member)
      table.insert(taken, member)
      table.insert(taken, last or '0')
    end
  end
end
return taken
"""

# After a failed write, shorten the window to the retry backoff, only if this worker still owns
# it: the next activity past the backoff retries the write (nothing is lost), while a failing
# database gets at most one attempt per subject per backoff instead of one per request.
# KEYS[1] throttle key  KEYS[2] windows
# ARGV[1] token  ARGV[2] member  ARGV[3] backoff ms  ARGV[4] now ms
SHORTEN_WINDOW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local backoff = tonumber(ARGV[3])
  if redis.call('PTTL', KEYS[1]) > backoff then
    redis.call('PEXPIRE', KEYS[1], backoff)
    redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) + backoff, ARGV[2])
  end
  return 1
end
return 0
"""

# Add one worker's counter deltas, each stamped with the millisecond of the activity it counts,
# keeping only those at or after the last reset: nothing from before a reset leaks into the fresh
# counters, nothing after it is lost, whichever worker reset and whenever the others flush.
# KEYS[1] counters   ARGV[1..] triples of (epoch ms, field, delta)
ADD_COUNTERS = """
local reset_at = tonumber(redis.call('HGET', KEYS[1], 'resetAt') or '0')
for i = 1, #ARGV, 3 do
  if tonumber(ARGV[i]) >= reset_at then
    redis.call('HINCRBY', KEYS[1], ARGV[i + 1], ARGV[i + 2])
  end
end
return 1
"""

# Zero the counters cluster-wide from a moment on.
# KEYS[1] counters   ARGV[1] epoch ms of the reset   ARGV[2..] counter fields
RESET_COUNTERS = """
redis.call('HSET', KEYS[1], 'resetAt', ARGV[1])
for i = 2, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], 0)
end
return 1
"""

# Count online subjects by kind (users, anonymous) with the rule of _WAS_ONLINE.
# KEYS[1] online set  KEYS[2] last activity  KEYS[3] pending offline
# ARGV[1] now ms  ARGV[2] threshold ms  ARGV[3] prefix of the connection hashes
COUNT_ONLINE = (
    _WAS_ONLINE
    + """
local users, anons = 0, 0
local now, threshold = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if was_online(KEYS[1], ARGV[3] .. member, KEYS[3], KEYS[2], member, now, threshold) == 1 then
    if string.sub(member, 1, 5) == 'anon:' then anons = anons + 1 else users = users + 1 end
  end
end
return {users, anons}
"""
)


# Every script, loaded at start-up so that no request pays a NOSCRIPT retry.
SCRIPTS = (
    ACTIVITY,
    CONNECT,
    DISCONNECT,
    FINISH_OFFLINE,
    RENEW_LEASE,
    RELEASE_LEASE,
    WORKER_BEAT,
    TAKE_QUIET_OFFLINE,
    SHORTEN_WINDOW,
    ADD_COUNTERS,
    RESET_COUNTERS,
    COUNT_ONLINE,
)
