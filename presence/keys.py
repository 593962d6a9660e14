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


# Record one activity that missed the local cache: claim the throttle window, raise the last
# activity, mark online. One round trip, atomic, so exactly one worker sees each transition.
# KEYS[1] throttle key  KEYS[2] windows  KEYS[3] last activity  KEYS[4] online set
# ARGV[1] token  ARGV[2] interval ms  ARGV[3] member  ARGV[4] now ms  ARGV[5] threshold ms
# Returns {won (0|1), window ms left, became online (0|1)}.
ACTIVITY = """
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
local was_online = 0
if redis.call('SISMEMBER', KEYS[4], ARGV[3]) == 1 then
  local prev = redis.call('ZSCORE', KEYS[3], ARGV[3])
  if prev and tonumber(prev) >= now - tonumber(ARGV[5]) then
    was_online = 1
  end
end
redis.call('ZADD', KEYS[3], 'GT', now, ARGV[3])
redis.call('SADD', KEYS[4], ARGV[3])
if won then won = 1 else won = 0 end
return {won, left, 1 - was_online}
"""

# Give a throttle window back after a failed write, only if this worker still owns it.
# KEYS[1] throttle key  KEYS[2] windows   ARGV[1] token  ARGV[2] member
RELEASE_WINDOW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
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

# Count subjects marked online whose presence still holds, by kind (users, anonymous).
# KEYS[1] online set  KEYS[2] last activity   ARGV[1] cutoff ms (activity at or after it counts)
COUNT_ONLINE = """
local users, anons = 0, 0
local cutoff = tonumber(ARGV[1])
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local score = redis.call('ZSCORE', KEYS[2], member)
  if score and tonumber(score) >= cutoff then
    if string.sub(member, 1, 5) == 'anon:' then anons = anons + 1 else users = users + 1 end
  end
end
return {users, anons}
"""
