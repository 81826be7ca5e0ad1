-- START: a worker takes the lease of a queued chunk and fetches its records -- only for the job
-- the scheduler queued last for that chunk, and only while none of its records is finished: a
-- job replayed into Redis (after its chunk committed, after the workload finished, or from an
-- earlier generation) is refused here, before it changes anything.
-- KEYS[1] pending  zset  job id -> lease deadline (+inf while queued)
-- KEYS[2] n        hash  counters: processing, j:<jid> (size), s:<jid> (sealed start note)
-- KEYS[3] rec      hash  record id -> sealed record (records of retry chunks)
-- KEYS[4] held     string the job this worker holds (for its supervisor)
-- KEYS[5] chunk    string the data chunk's packed sealed records (absent for a retry chunk)
-- KEYS[6] spec     hash  job id -> the sealed spec the scheduler queued
-- KEYS[7] parts    hash  chunk -> its commit's result part: present once the chunk committed
-- KEYS[8] done     bitmap            KEYS[9] failed  bitmap
-- ARGV[1] job id   ARGV[2] lease deadline   ARGV[3] records in the chunk
-- ARGV[4] record ids, comma-separated (read from rec when the chunk has no records of its own)
-- ARGV[5] sealed start note   ARGV[6] the sealed spec the job carries   ARGV[7] chunk
-- ARGV[8] the spec's record ranges "first-last,..."   ARGV[9] the job id of the chunk's next generation
-- returns {1} for a data chunk (the caller reads KEYS[5] itself, in the same round trip: a
-- value of megabytes copied through Lua would cost Redis more than all the rest), {0, sealed
-- record or false ...} in ARGV[4]'s order for a retry chunk, false when the job is no longer
-- pending (committed or reclaimed), or {-1, why} when it is refused: 'stale' (not the spec
-- queued for it, or a later generation of its chunk is queued), 'committed' (its chunk committed
-- already), 'finished' (a record of it is done or failed) -- no status, bit or counter is
-- written then; a superseded job (the first two cases) leaves pending
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return false end
-- superseded by the chunk's next generation, or its chunk committed: the job is dropped
if redis.call('HEXISTS', KEYS[6], ARGV[9]) == 1 or redis.call('HEXISTS', KEYS[7], ARGV[7]) == 1 then
  local why = redis.call('HEXISTS', KEYS[7], ARGV[7]) == 1 and 'committed' or 'stale'
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[6], ARGV[1])
  return {-1, why}
end
if redis.call('HGET', KEYS[6], ARGV[1]) ~= ARGV[6] then return {-1, 'stale'} end
for a, b in string.gmatch(ARGV[8], '(%d+)-(%d+)') do
  if redis.call('BITCOUNT', KEYS[8], a, b, 'BIT') > 0 or redis.call('BITCOUNT', KEYS[9], a, b, 'BIT') > 0 then
    return {-1, 'finished'}
  end
end
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
