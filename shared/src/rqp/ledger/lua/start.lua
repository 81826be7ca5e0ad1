-- START: a worker takes the lease of a queued chunk and fetches its records.
-- KEYS[1] pending  zset  job id -> lease deadline (+inf while queued)
-- KEYS[2] n        hash  counters: processing, j:<jid> (size), s:<jid> (sealed start note)
-- KEYS[3] rec      hash  record id -> sealed record (records of retry chunks)
-- KEYS[4] held     string the job this worker holds (for its supervisor)
-- KEYS[5] chunk    string the data chunk's packed sealed records (absent for a retry chunk)
-- ARGV[1] job id   ARGV[2] lease deadline   ARGV[3] records in the chunk
-- ARGV[4] record ids, comma-separated (read from rec when the chunk has no records of its own)
-- ARGV[5] sealed start note
-- returns {1} for a data chunk (the caller reads KEYS[5] itself, in the same round trip: a
-- value of megabytes copied through Lua would cost Redis more than all the rest), {0, sealed
-- record or false ...} in ARGV[4]'s order for a retry chunk, or false when the job is no longer
-- pending (committed or reclaimed)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return false end
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
redis.call('SET', KEYS[4], ARGV[1], 'EX', 86400)
if not redis.call('HGET', KEYS[2], 'j:' .. ARGV[1]) then
  redis.call('HINCRBY', KEYS[2], 'processing', ARGV[3])
  redis.call('HSET', KEYS[2], 'j:' .. ARGV[1], ARGV[3])
end
redis.call('HSET', KEYS[2], 's:' .. ARGV[1], ARGV[5])
if redis.call('EXISTS', KEYS[5]) == 1 then return {1} end
local out = {0}
each_slice(ids(ARGV[4]), function(...)
  local part = redis.call('HMGET', KEYS[3], ...)
  for i = 1, select('#', ...) do out[#out + 1] = part[i] end
end)
return out
