-- COMMIT: a chunk's outcome, all or nothing, and only while its job is still pending and its
-- chunk has not committed (so a slow worker's late commit, the scheduler's re-run and a job
-- replayed into Redis can never both count).
-- KEYS[1] pending  KEYS[2] n (counters: processing, done, failed)  KEYS[3] rec  KEYS[4] st  KEYS[5] done  KEYS[6] failed
-- KEYS[7] retry    KEYS[8] parts  KEYS[9] perf (records, seconds, last; first: when the first committed chunk began, set once)  KEYS[10] spec  KEYS[11] outbox
-- KEYS[12] outbox times  KEYS[13] held  KEYS[14] chunk (its records)  KEYS[15] notes
-- ARGV[1] job id   ARGV[2] chunk   ARGV[3] part reference (name|first|last)
-- ARGV[4] seconds the records took   ARGV[5] now   ARGV[6] records processed
-- ARGV[7] packed sealed statuses of the records not done (u32 id, u32 length, bytes)*
-- ARGV[8] done record ids as runs "first-last,..."   ARGV[9] failed ids (comma-separated)
-- ARGV[10] retries "id:attempt=due,..."
-- ARGV[11] packed sealed records not done, kept for their retry or `rqp retry`
-- ARGV[12] the chunk's note field   ARGV[13] its sealed note (what its done records share)
-- ARGV[14] ids done in a retry chunk: their kept records and earlier statuses go (comma-separated)
-- ARGV[15] CPU seconds the script hosts spent on the records ('' when not measured)
-- ARGV[16..] (message id, outbox value) pairs
-- returns 1 when committed, 0 when the job was no longer pending
if redis.call('GET', KEYS[13]) == ARGV[1] then redis.call('DEL', KEYS[13]) end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HEXISTS', KEYS[8], ARGV[2]) == 1 then return 0 end
redis.call('HDEL', KEYS[10], ARGV[1])
local s = redis.call('HGET', KEYS[2], 'j:' .. ARGV[1])
if s then
  redis.call('HINCRBY', KEYS[2], 'processing', 0 - tonumber(s))  -- (never -0: HINCRBY refuses it)
end
redis.call('HDEL', KEYS[2], 'j:' .. ARGV[1], 's:' .. ARGV[1])
redis.call('HSET', KEYS[8], ARGV[2], ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[9], 'seconds', ARGV[4])
redis.call('HINCRBY', KEYS[9], 'records', ARGV[6])
redis.call('HSET', KEYS[9], 'last', ARGV[5])
redis.call('HSETNX', KEYS[9], 'first', tostring(tonumber(ARGV[5]) - tonumber(ARGV[4])))
if ARGV[15] ~= '' then
  -- pcall: junk a Redis writer put in either field restarts both from this chunk's figures
  -- (chunk sizes only), never fails the commit
  local a = redis.pcall('HINCRBYFLOAT', KEYS[9], 'cpu', ARGV[15])
  local b = redis.pcall('HINCRBY', KEYS[9], 'cpu_records', ARGV[6])
  if type(a) == 'table' and a.err or type(b) == 'table' and b.err then
    redis.call('HSET', KEYS[9], 'cpu', ARGV[15], 'cpu_records', ARGV[6])
  end
end
hset_packed(KEYS[4], ARGV[7])
local done = 0
for a, b in string.gmatch(ARGV[8], '(%d+)-(%d+)') do
  set_bits(KEYS[5], tonumber(a), tonumber(b))
  done = done + tonumber(b) - tonumber(a) + 1
end
local failed = ids(ARGV[9])
for _, id in ipairs(failed) do redis.call('SETBIT', KEYS[6], id, 1) end
-- the counts beside the bitmaps, so progress costs O(1), not a BITCOUNT over every record
if done > 0 then redis.call('HINCRBY', KEYS[2], 'done', done) end
if #failed > 0 then redis.call('HINCRBY', KEYS[2], 'failed', #failed) end
for member, due in string.gmatch(ARGV[10], '([%d:]+)=([%d.]+)') do redis.call('ZADD', KEYS[7], due, member) end
hset_packed(KEYS[3], ARGV[11])
redis.call('DEL', KEYS[14])
if ARGV[13] ~= '' then redis.call('HSET', KEYS[15], ARGV[12], ARGV[13]) end
each_slice(ids(ARGV[14]), function(...)
  redis.call('HDEL', KEYS[3], ...)
  redis.call('HDEL', KEYS[4], ...)
end)
for i = 16, #ARGV, 2 do
  redis.call('HSET', KEYS[11], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[12], ARGV[5], ARGV[i])
end
return 1
