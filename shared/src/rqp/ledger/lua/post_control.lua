-- POST_CONTROL: append an operator's signed request (rqp.oplog) to the workload's request list and
-- to the global audit chain, atomically, only if it links to the chain's current head.
-- The script cannot check signatures: whoever acts on a request (the scheduler) verifies it. What
-- it guarantees is order: every entry's ``prev`` is the digest of the entry below it.
-- KEYS[1] meta         hash   the workload's shown state (advisory: nothing acts on it)
-- KEYS[2] control      list   the workload's signed requests, oldest first
-- KEYS[3] audit        list   the audit chain, newest first
-- KEYS[4] audit head   string digest of the chain's newest entry
-- KEYS[5] lock         string the scheduler supervising the workload (none: hand it to a serving one)
-- KEYS[6] submissions  list
-- ARGV[1] the signed request (bytes stored as they are hashed)   ARGV[2] its prev
-- ARGV[3] its digest   ARGV[4] audit entries kept   ARGV[5] workload id
-- ARGV[6] advisory state change: 'pause' | 'resume' | 'cancel' | '' (also the plain ``control``
--         field schedulers from before signed control obey: set on pause/cancel, cleared on resume)
-- ARGV[7] 1: refuse a workload Redis does not know   ARGV[8] 1: hand it to a serving scheduler
-- returns {1, new shown state} when appended; {0, current head} when ``prev`` is not the head
-- (sign again on it); {-1, shown state} when the shown state does not allow the change ('' when
-- the workload is unknown)
local head = redis.call('GET', KEYS[4]) or string.rep('0', 64)
if head ~= ARGV[2] then return {0, head} end
local state = redis.call('HGET', KEYS[1], 'state')
if ARGV[7] == '1' and not state then return {-1, ''} end
local to = state or ''
local change = ARGV[6]
if change == 'pause' then
  if state ~= 'running' then return {-1, state or ''} end
  to = 'paused'
  redis.call('HSET', KEYS[1], 'state', to, 'control', 'pause')
elseif change == 'resume' then
  if state ~= 'paused' then return {-1, state or ''} end
  to = 'running'
  redis.call('HSET', KEYS[1], 'state', to)
  redis.call('HDEL', KEYS[1], 'control')
elseif change == 'cancel' then
  if state ~= 'running' and state ~= 'paused' then return {-1, state or ''} end
  to = 'cancelling'
  redis.call('HSET', KEYS[1], 'state', to, 'control', 'cancel')
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
redis.call('SET', KEYS[4], ARGV[3])
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[5]) == 0 then
  redis.call('RPUSH', KEYS[6], ARGV[5])
end
return {1, to}
