-- RENEW_LOCK: the supervising scheduler extends its lock -- only its own (compare and set), and
-- takes it back if it lapsed meanwhile; another scheduler's lock is never touched.
-- KEYS[1] lock     string  the scheduler supervising the workload (host:pid)
-- ARGV[1] this scheduler   ARGV[2] seconds to live
-- returns 1 when this scheduler holds the lock, 0 when another one does
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
