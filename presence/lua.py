"""Every Lua script Redis runs, in one place, built from the Python names they share.

The rule a script applies is the rule of :mod:`presence.policy`: ``was_online`` below is
:func:`presence.policy.is_online`, line for line, and ``tests/integration/test_rule_agreement.py``
runs random histories through both and requires them to agree. The member format (``kind:id``)
and the worker-entry format (``member|sid``) come from :mod:`presence.domain` and
:mod:`presence.keys`, so no script spells them itself.

Scripts are text here; the module that owns a script's keys calls it through a typed method.
"""

from __future__ import annotations

import json
from string import Template

from presence.domain import SubjectKind, SubjectRef
from presence.keys import WORKER_ENTRY_SEPARATOR as _ENTRY_SEPARATOR


def _lua(source: str) -> str:
    """Fill ``$NAME`` placeholders with the Python constants, as Lua string literals."""
    constants = {
        # Members of anonymous subjects start with this (what SubjectRef.member writes).
        "ANON_PREFIX": SubjectRef(SubjectKind.ANONYMOUS, "").member,
        "ENTRY_SEPARATOR": _ENTRY_SEPARATOR,
    }
    return Template(source).substitute({k: json.dumps(v) for k, v in constants.items()})


# presence.policy.is_online, in Lua: marked online, and a live connection, a connection that
# closed within the grace period, or activity at or after ``now - threshold``.
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
ACTIVITY = _lua(
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
CONNECT = _lua(
    _WAS_ONLINE
    + """
local now = tonumber(ARGV[4])
local was = was_online(KEYS[3], KEYS[1], KEYS[5], KEYS[4], ARGV[3], now, tonumber(ARGV[5]))
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3] .. $ENTRY_SEPARATOR .. ARGV[1])
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
DISCONNECT = _lua("""
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2] .. $ENTRY_SEPARATOR .. ARGV[1])
if removed == 1 and redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
  redis.call('ZADD', KEYS[4], 'GT', ARGV[3], ARGV[2])
  return 1
end
return 0
""")

# The grace period of a subject's last close has ended. Idempotent: of several workers finishing
# the same close, exactly one gets 1 back and announces it.
# Going offline raises the subject's lastSeen and journals the offline until the database has it.
# KEYS[1] the subject's connections  KEYS[2] pending offline  KEYS[3] online set
# KEYS[4] last seen  KEYS[5] unwritten offlines  KEYS[6] away (an offline subject is not away)
# ARGV[1] member  ARGV[2] epoch ms of the close being finished
# Returns 1 when the subject went offline now, else 0 (reconnected, or already finished).
FINISH_OFFLINE = _lua("""
local closed = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not closed or tonumber(closed) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
if redis.call('SREM', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[4], 'GT', ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[5], 'GT', ARGV[2], ARGV[1])
redis.call('SREM', KEYS[6], ARGV[1])
return 1
""")

# The database has the offlines of these members up to the given times: out of the journal,
# unless a later offline was journaled meanwhile.
# KEYS[1] unwritten offlines   ARGV member, ms, member, ms, ...
SETTLE_WRITTEN = """
local settled = 0
for i = 1, #ARGV, 2 do
  local at = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if at and tonumber(at) <= tonumber(ARGV[i + 1]) then
    settled = settled + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return settled
"""

# Take offline the subjects of a batch that are marked online but no longer online by the rule
# (no connection, no grace period, no activity at or after the cutoff). State-conditional, so
# two sweepers running at once take each subject offline once.
# KEYS[1] online  KEYS[2] last activity  KEYS[3] pending offline  KEYS[4] last seen
# ARGV[1] cutoff ms  ARGV[2] prefix of the connection hashes  ARGV[3..] members
# Returns a flat list: member, last activity ms, member, last activity ms, ...
TAKE_QUIET_OFFLINE = _lua(
    _WAS_ONLINE
    + """
local taken = {}
local cutoff = tonumber(ARGV[1])
for i = 3, #ARGV do
  local member = ARGV[i]
  if redis.call('SISMEMBER', KEYS[1], member) == 1
      and was_online(KEYS[1], ARGV[2] .. member, KEYS[3], KEYS[2], member, cutoff, 0) == 0 then
    redis.call('SREM', KEYS[1], member)
    local last = redis.call('ZSCORE', KEYS[2], member) or '0'
    if last ~= '0' then redis.call('ZADD', KEYS[4], 'GT', last, member) end
    table.insert(taken, member)
    table.insert(taken, last)
  end
end
return taken
"""
)

# What Redis knows of each member of one bucket, in one command (a pipeline of one command per
# field and member costs the client more than the reads cost Redis; SMISMEMBER and ZMSCORE
# need Redis 6.2).
# KEYS[1] online  KEYS[2] last activity  KEYS[3] pending offline  KEYS[4] last seen
# KEYS[5] generations  KEYS[6] away   ARGV[1] prefix of the connection hashes
# ARGV[2] the members, one per line (one argument: packing hundreds costs the client more)
# Returns, per member: marked (0|1), last activity ms, closed ms (in grace), last seen ms,
# generation, connections, away (0|1) (a missing value is nil).
LIVE_STATES = """
local members = {}
for member in string.gmatch(ARGV[2], '[^\\n]+') do
  members[#members + 1] = member
end
local out = {}
-- One read of each field for up to 1 000 members at a time (a command per member and field
-- made the script cost Redis 1.8 ms for 200 members; unpack stays far below Lua's limit).
for first = 1, #members, 1000 do
  local last = math.min(first + 999, #members)
  local online = redis.call('SMISMEMBER', KEYS[1], unpack(members, first, last))
  local activity = redis.call('ZMSCORE', KEYS[2], unpack(members, first, last))
  local closed = redis.call('ZMSCORE', KEYS[3], unpack(members, first, last))
  local seen = redis.call('ZMSCORE', KEYS[4], unpack(members, first, last))
  local generation = redis.call('HMGET', KEYS[5], unpack(members, first, last))
  local away = redis.call('SMISMEMBER', KEYS[6], unpack(members, first, last))
  for j = 1, last - first + 1 do
    local n = #out
    out[n + 1] = online[j]
    out[n + 2] = activity[j]
    out[n + 3] = closed[j]
    out[n + 4] = seen[j]
    out[n + 5] = generation[j]
    out[n + 6] = redis.call('HLEN', ARGV[1] .. members[first + j - 1])
    out[n + 7] = away[j]
  end
end
return out
"""

# End one custom status: exactly one caller removes it from the schedule, and only while the
# schedule still has this end (a newer status replaced it otherwise).
# KEYS[1] status ends   ARGV[1] member  ARGV[2] end ms   Returns 1 for the one that ends it.
END_STATUS = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""

# User activity: raise the subject's latest input; it is no longer away.
# KEYS[1] user input  KEYS[2] away   ARGV[1] member  ARGV[2] now ms
# Returns 1 when the subject was away (it is back), else 0.
USER_INPUT = """
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
return redis.call('SREM', KEYS[2], ARGV[1])
"""

# Of the members whose latest input is at or before the cutoff, those still connected go away
# (exactly one caller takes each); the others (disconnected) just leave the index.
# KEYS[1] user input  KEYS[2] away   ARGV[1] cutoff ms  ARGV[2] prefix of the connection hashes
# ARGV[3..] members   Returns the members that went away.
TAKE_AWAY = """
local taken = {}
local cutoff = tonumber(ARGV[1])
for i = 3, #ARGV do
  local member = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], member)
  if score and tonumber(score) <= cutoff then
    redis.call('ZREM', KEYS[1], member)
    if redis.call('HLEN', ARGV[2] .. member) > 0 and redis.call('SADD', KEYS[2], member) == 1 then
      taken[#taken + 1] = member
    end
  end
end
return taken
"""

# Count online subjects by kind (users, anonymous) with the rule of was_online.
# KEYS[1] online set  KEYS[2] last activity  KEYS[3] pending offline
# ARGV[1] now ms  ARGV[2] threshold ms  ARGV[3] prefix of the connection hashes
COUNT_ONLINE = _lua(
    _WAS_ONLINE
    + """
local users, anons = 0, 0
local now, threshold = tonumber(ARGV[1]), tonumber(ARGV[2])
local anon = $ANON_PREFIX
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if was_online(KEYS[1], ARGV[3] .. member, KEYS[3], KEYS[2], member, now, threshold) == 1 then
    if string.sub(member, 1, #anon) == anon then anons = anons + 1 else users = users + 1 end
  end
end
return {users, anons}
"""
)

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

# Renew the maintenance lease, only while this worker still holds it.
# KEYS[1] leader   ARGV[1] holder token   ARGV[2] ttl ms   Returns 1 when renewed, else 0.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Give a lock back only if this caller holds it (its token): the maintenance lease at a
# graceful shutdown, a large room's counting lock (presence.rooms). A lock that expired and was
# taken by another is never released by the first.
# KEYS[1] the lock   ARGV[1] holder token
RELEASE_IF_HELD = """
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

# A worker's graceful exit: no longer counted alive, at once.
# KEYS[1] worker key  KEYS[2] workers   ARGV[1] worker id
WORKER_LEAVE = """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# An admin's online: marked, and active at ARGV[2] unless it was active later.
# KEYS[1] last activity  KEYS[2] online   ARGV[1] member  ARGV[2] now ms
MARK_ONLINE = """
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# An admin's offline: unmarked, out of any grace period and of away. Returns the last activity
# (epoch ms, as stored) or false, which becomes its lastSeen.
# KEYS[1] online  KEYS[2] pending offline  KEYS[3] away  KEYS[4] last activity  ARGV[1] member
MARK_OFFLINE = """
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
return redis.call('ZSCORE', KEYS[4], ARGV[1])
"""

# Raise members' last activity (a score only moves forward; a new member is added). The pairs
# come packed in one argument, as the counters' rows do: a worker pushes every busy subject's
# activity a few times a second, and encoding two arguments per member cost it more than Redis
# takes to apply them. ZADD takes them a thousand arguments at a time (Lua's stack is bounded).
# KEYS[1] last activity   ARGV[1] rows "ms member\n…"
RAISE_LAST_ACTIVITY = """
local args = {}
for ms, member in string.gmatch(ARGV[1], '(%d+) ([^\\n]+)') do
  args[#args + 1] = ms
  args[#args + 1] = member
  if #args >= 1000 then
    redis.call('ZADD', KEYS[1], 'GT', unpack(args))
    args = {}
  end
end
if #args > 0 then redis.call('ZADD', KEYS[1], 'GT', unpack(args)) end
return 1
"""

# Add one worker's counter deltas, each row stamped with the millisecond of the activity it
# counts, keeping only those at or after the last reset: nothing from before a reset leaks into the
# fresh counters, nothing after it is lost, whichever worker reset and whenever the others flush.
# The rows come packed in one argument (thousands of separate arguments cost the worker more to
# encode than the requests they count) and are summed here, one HINCRBY per field.
# KEYS[1] counters   ARGV[1] rows "ms d1 d2 d3 d4\n…" (deltas in the order of ARGV[2..5])
# ARGV[2..5] the counter fields
ADD_COUNTERS = """
local reset_at = tonumber(redis.call('HGET', KEYS[1], 'resetAt') or '0')
local sums = {0, 0, 0, 0}
for at, a, b, c, d in string.gmatch(ARGV[1], '(%d+) (%d+) (%d+) (%d+) (%d+)') do
  if tonumber(at) >= reset_at then
    sums[1] = sums[1] + tonumber(a)
    sums[2] = sums[2] + tonumber(b)
    sums[3] = sums[3] + tonumber(c)
    sums[4] = sums[4] + tonumber(d)
  end
end
for i = 1, 4 do
  if sums[i] ~= 0 then redis.call('HINCRBY', KEYS[1], ARGV[i + 1], sums[i]) end
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

# One failed sign-in: count it, and start the window with the first failure.
# KEYS[1] the counter   ARGV[1] window ms
COUNT_FAILURE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
"""

# A dead worker leaves the route sets of one bucket: no message is sent to its channel any more.
# KEYS[1] the worker's routes in this bucket   ARGV[1] the bucket's route prefix   ARGV[2] worker id
# Returns how many rooms it was routed for.
FORGET_ROUTES = """
local rooms = redis.call('SMEMBERS', KEYS[1])
for _, room in ipairs(rooms) do
  redis.call('SREM', ARGV[1] .. room, ARGV[2])
end
redis.call('DEL', KEYS[1])
return #rooms
"""

# Every script, loaded at start-up so that no request pays a NOSCRIPT retry.
# A member of a large conversation came online (ARGV[2] = 1) or went offline (0): its online set
# changes, if the conversation is counted (else its next count reads the live states anyway).
# KEYS[1] the room's online set   ARGV[1] member  ARGV[2] online (0|1)
# Returns 1 when the count changed.
ROOM_MEMBER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '1' then return redis.call('ZADD', KEYS[1], 0, ARGV[1]) end
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

# A worker counted a large conversation into KEYS[2]: it becomes the count, unless another
# worker's count got there first. KEYS[1] the room's online set  KEYS[2] the worker's count
# ARGV[1] lifetime ms   Returns 1 when this count was published.
ROOM_COUNTED = """
if redis.call('RENAMENX', KEYS[2], KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return 1
end
redis.call('DEL', KEYS[2])
return 0
"""

SCRIPTS = (
    ACTIVITY,
    CONNECT,
    DISCONNECT,
    FINISH_OFFLINE,
    SETTLE_WRITTEN,
    TAKE_QUIET_OFFLINE,
    LIVE_STATES,
    COUNT_ONLINE,
    SHORTEN_WINDOW,
    RENEW_LEASE,
    RELEASE_IF_HELD,
    WORKER_BEAT,
    WORKER_LEAVE,
    MARK_ONLINE,
    MARK_OFFLINE,
    RAISE_LAST_ACTIVITY,
    ADD_COUNTERS,
    RESET_COUNTERS,
    COUNT_FAILURE,
    FORGET_ROUTES,
    END_STATUS,
    USER_INPUT,
    TAKE_AWAY,
    ROOM_MEMBER,
    ROOM_COUNTED,
)
