"""Redis scripts that make chunk start, commit and reclaim atomic.

The pending zset is the single source of truth for "this job may still commit": start and commit
succeed only while the job id is in it, and reclaim removes it. Whichever of a slow worker's
commit and the scheduler's reclaim runs first wins; the other sees the job gone and does
nothing. That is what makes every record's result count exactly once.
"""

from __future__ import annotations

import struct

import redis

__all__ = ["PAIR", "Scripts", "join_ids", "pack_values"]

#: the header of one packed value: record id, length
PAIR = struct.Struct(">II")


def pack_values(pairs: list[tuple[int, bytes]]) -> bytes:
    """(id, value) pairs as one blob for the scripts' ``hset_packed``."""
    return b"".join([PAIR.pack(i, len(v)) + v for i, v in pairs])


def join_ids(ids: list[int]) -> str:
    return ",".join(map(str, ids))


# Record ids travel as one comma-separated string and sealed values as one packed blob
# (u32 id, u32 length, bytes)*: a handful of arguments per chunk instead of thousands keeps
# the client's command packing off the hot path.
_HELPERS = """
local function ids(s)
  local t = {}
  for id in string.gmatch(s, '%d+') do t[#t + 1] = id end
  return t
end
local function hset_packed(key, blob)
  local pos, n, args = 1, #blob, {}
  while pos <= n do
    local id, len, p = struct.unpack('>I4>I4', blob, pos)
    args[#args + 1] = id
    args[#args + 1] = string.sub(blob, p, p + len - 1)
    pos = p + len
    if #args >= 4000 then redis.call('HSET', key, unpack(args)); args = {} end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end
local function each_slice(t, f)
  for i = 1, #t, 4000 do f(unpack(t, i, math.min(i + 3999, #t))) end
end
"""

# KEYS: rec, st   ARGV: packed records, packed statuses (the scheduler's enqueue: one argument
# each instead of four per record, which otherwise dominates the client's CPU)
PUT = (
    _HELPERS
    + """
hset_packed(KEYS[1], ARGV[1])
hset_packed(KEYS[2], ARGV[2])
return 1
"""
)

# KEYS: pending, n, rec, held   ARGV: jid, deadline, size, ids, sealed start (when and which
# worker: the records' "processing" state is derived from it, not written per record)
START = (
    _HELPERS
    + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return false end
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
redis.call('SET', KEYS[4], ARGV[1], 'EX', 86400)
if not redis.call('HGET', KEYS[2], 'j:' .. ARGV[1]) then
  redis.call('HINCRBY', KEYS[2], 'processing', ARGV[3])
  redis.call('HSET', KEYS[2], 'j:' .. ARGV[1], ARGV[3])
end
redis.call('HSET', KEYS[2], 's:' .. ARGV[1], ARGV[5])
local out = {}
each_slice(ids(ARGV[4]), function(...)
  local part = redis.call('HMGET', KEYS[3], ...)
  for i = 1, select('#', ...) do out[#out + 1] = part[i] end
end)
return out
"""
)

# KEYS: pending, n, rec, st, done, failed, retry, parts, perf, spec, outbox, outbox_t, held
# ARGV: jid, chunk, part, elapsed, now, nprocessed, packed statuses, done ids, failed ids,
#       retries "id:attempt=due,...", then (message id, outbox value)*
COMMIT = (
    _HELPERS
    + """
if redis.call('GET', KEYS[13]) == ARGV[1] then redis.call('DEL', KEYS[13]) end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[10], ARGV[1])
local s = redis.call('HGET', KEYS[2], 'j:' .. ARGV[1])
if s then
  redis.call('HINCRBY', KEYS[2], 'processing', -tonumber(s))
end
redis.call('HDEL', KEYS[2], 'j:' .. ARGV[1], 's:' .. ARGV[1])
redis.call('HSET', KEYS[8], ARGV[2], ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[9], 'seconds', ARGV[4])
redis.call('HINCRBY', KEYS[9], 'records', ARGV[6])
redis.call('HSET', KEYS[9], 'last', ARGV[5])
hset_packed(KEYS[4], ARGV[7])
local done = ids(ARGV[8])
if #done > 0 then
  local ops = {}
  for _, id in ipairs(done) do
    ops[#ops + 1] = 'SET'; ops[#ops + 1] = 'u1'; ops[#ops + 1] = id; ops[#ops + 1] = 1
    if #ops >= 4000 then redis.call('BITFIELD', KEYS[5], unpack(ops)); ops = {} end
  end
  if #ops > 0 then redis.call('BITFIELD', KEYS[5], unpack(ops)) end
  each_slice(done, function(...) redis.call('HDEL', KEYS[3], ...) end)
end
for _, id in ipairs(ids(ARGV[9])) do redis.call('SETBIT', KEYS[6], id, 1) end
for member, due in string.gmatch(ARGV[10], '([%d:]+)=([%d.]+)') do redis.call('ZADD', KEYS[7], due, member) end
for i = 11, #ARGV, 2 do
  redis.call('HSET', KEYS[11], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[12], ARGV[5], ARGV[i])
end
return 1
"""
)

# KEYS: pending, n, spec   ARGV: jid   -> sealed spec, or false if the job already committed
RECLAIM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
local s = redis.call('HGET', KEYS[2], 'j:' .. ARGV[1])
if s then
  redis.call('HINCRBY', KEYS[2], 'processing', -tonumber(s))
end
redis.call('HDEL', KEYS[2], 'j:' .. ARGV[1], 's:' .. ARGV[1])
local spec = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return spec
"""


class Scripts:
    """Registered once per client; EVALSHA after the first call."""

    def __init__(self, client: redis.Redis) -> None:
        self.put = client.register_script(PUT)
        self.start = client.register_script(START)
        self.commit = client.register_script(COMMIT)
        self.reclaim = client.register_script(RECLAIM)
