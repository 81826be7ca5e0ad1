"""Redis scripts that make chunk start, commit and reclaim atomic.

The pending zset is the single source of truth for "this job may still commit": start and commit
succeed only while the job id is in it, and reclaim removes it. Whichever of a slow worker's
commit and the scheduler's reclaim runs first wins; the other sees the job gone and does
nothing. That is what makes every record's result count exactly once.
"""

from __future__ import annotations

import redis

__all__ = ["Scripts"]

# KEYS: pending, n, rec, st   ARGV: jid, deadline, size, nrids, rids..., (rid, status)...
START = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return false end
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
if not redis.call('HGET', KEYS[2], 'j:' .. ARGV[1]) then
  redis.call('HINCRBY', KEYS[2], 'processing', ARGV[3])
  redis.call('HSET', KEYS[2], 'j:' .. ARGV[1], ARGV[3])
end
local n = tonumber(ARGV[4])
local out = {}
for i = 1, n do out[i] = redis.call('HGET', KEYS[3], ARGV[4 + i]) end
for i = 5 + n, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
return out
"""

# KEYS: pending, n, rec, st, done, failed, retry, parts, perf, spec, outbox, outbox_t
# ARGV: jid, chunk, part, elapsed, now, nprocessed, then counted sections:
#       statuses (rid, sealed)*, done rids*, failed rids*, retries (member, score)*, messages (mid, body)*
COMMIT = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[10], ARGV[1])
local s = redis.call('HGET', KEYS[2], 'j:' .. ARGV[1])
if s then
  redis.call('HINCRBY', KEYS[2], 'processing', -tonumber(s))
  redis.call('HDEL', KEYS[2], 'j:' .. ARGV[1])
end
redis.call('HSET', KEYS[8], ARGV[2], ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[9], 'seconds', ARGV[4])
redis.call('HINCRBY', KEYS[9], 'records', ARGV[6])
redis.call('HSET', KEYS[9], 'last', ARGV[5])
local i = 7
local n = tonumber(ARGV[i]); i = i + 1
for j = 1, n do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for j = 1, n do redis.call('SETBIT', KEYS[5], ARGV[i], 1); redis.call('HDEL', KEYS[3], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
for j = 1, n do redis.call('SETBIT', KEYS[6], ARGV[i], 1); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
for j = 1, n do redis.call('ZADD', KEYS[7], ARGV[i + 1], ARGV[i]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for j = 1, n do
  redis.call('HSET', KEYS[11], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[12], ARGV[5], ARGV[i])
  i = i + 2
end
return 1
"""

# KEYS: pending, n, spec   ARGV: jid   -> sealed spec, or false if the job already committed
RECLAIM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
local s = redis.call('HGET', KEYS[2], 'j:' .. ARGV[1])
if s then
  redis.call('HINCRBY', KEYS[2], 'processing', -tonumber(s))
  redis.call('HDEL', KEYS[2], 'j:' .. ARGV[1])
end
local spec = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return spec
"""


class Scripts:
    """Registered once per client; EVALSHA after the first call."""

    def __init__(self, client: redis.Redis) -> None:
        self.start = client.register_script(START)
        self.commit = client.register_script(COMMIT)
        self.reclaim = client.register_script(RECLAIM)
