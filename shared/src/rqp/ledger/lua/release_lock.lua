-- RELEASE_LOCK: a run that ended or stopped hands the workload's lock on at once. The fence
-- stays: the next holder's generation is one higher.
-- KEYS[1] lock  KEYS[2] fence   (as in _lock.lua)
-- ARGV[1] this scheduler (host:pid)   ARGV[2] its token (take_lock's)
-- returns 1 when the lock was this run's and is released, 0 otherwise
if str(KEYS[1]) == ARGV[1] and str(KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
