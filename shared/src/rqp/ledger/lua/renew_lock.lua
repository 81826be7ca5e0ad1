-- RENEW_LOCK: the supervising scheduler extends its lock -- only while the fence still names its
-- token (nobody took the lock since), and takes it back if it lapsed with nobody after it.
-- KEYS[1] lock  KEYS[2] fence   (as in _lock.lua)
-- ARGV[1] this scheduler (host:pid)   ARGV[2] seconds to live   ARGV[3] its token (take_lock's)
-- returns 1 while this scheduler holds the lock, 0 when another took it over (or a Redis writer
--         forged the lock or the fence: the run stops supervising; its lock lapses and is taken
--         again by a scheduler that looks)
if str(KEYS[2]) ~= ARGV[3] then
  return 0
end
local held = str(KEYS[1])
if held and held ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
