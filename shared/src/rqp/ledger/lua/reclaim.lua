-- RECLAIM: the scheduler takes back a chunk whose lease ran out or whose job was lost, to re-run
-- it or fail its records.
-- KEYS[1] pending  KEYS[2] n  KEYS[3] spec  KEYS[4] parts
-- ARGV[1] job id   ARGV[2] its chunk   ARGV[3] the job id of the chunk's next generation
-- returns the job's sealed spec, or false when it committed first (or its chunk did, or a later
-- generation of it is queued: a job replayed into pending is dropped, never re-run)
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
local s = redis.call('HGET', KEYS[2], 'j:' .. ARGV[1])
if s then
  redis.call('HINCRBY', KEYS[2], 'processing', 0 - tonumber(s))  -- (never -0: HINCRBY refuses it)
end
redis.call('HDEL', KEYS[2], 'j:' .. ARGV[1], 's:' .. ARGV[1])
local spec = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('HEXISTS', KEYS[4], ARGV[2]) == 1 or redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then
  return false
end
return spec
