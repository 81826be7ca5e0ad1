-- CONTROL: an operator's request for a workload -- pause, resume or cancel -- checked against its
-- state and recorded, at once; the supervising scheduler carries it out (run.py).
-- KEYS[1] meta   hash   the workload's state and its ``control`` field
-- KEYS[2] audit  list   who asked for what, when (JSON, newest first)
-- KEYS[3] lock   string the scheduler supervising it (none: hand it to a serving one)
-- KEYS[4] submissions list
-- ARGV[1] action 'pause' | 'resume' | 'cancel'   ARGV[2] workload id   ARGV[3] audit entry (JSON)
-- ARGV[4] audit entries kept
-- returns {1, new state} when done, or {0, current state} when the workload's state does not
-- allow it ('' when the workload is unknown)
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0, ''} end
local to
if ARGV[1] == 'pause' and state == 'running' then
  to = 'paused'
  redis.call('HSET', KEYS[1], 'state', to, 'control', 'pause')
elseif ARGV[1] == 'resume' and state == 'paused' then
  to = 'running'
  redis.call('HSET', KEYS[1], 'state', to)
  redis.call('HDEL', KEYS[1], 'control')
elseif ARGV[1] == 'cancel' and (state == 'running' or state == 'paused') then
  to = 'cancelling'
  redis.call('HSET', KEYS[1], 'state', to, 'control', 'cancel')
else
  return {0, state}
end
if redis.call('EXISTS', KEYS[3]) == 0 and ARGV[1] ~= 'pause' then
  redis.call('RPUSH', KEYS[4], ARGV[2])
end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
return {1, to}
