-- LEADER_RENEW: the leader extends its lease -- only while the fence still names it.
-- KEYS[1] lease  KEYS[2] fence   (as in leader_take.lua)
-- ARGV[1] this leader's token "<generation> <holder>"   ARGV[2] lease milliseconds
-- returns 1 while this scheduler leads (a lease that lapsed with nobody after it is taken back:
--         no one else acted meanwhile, the fence says so), 0 when another scheduler took over
--         (or a Redis writer forged the lease: the leader steps down, scheduling stalls a lease).
if str(KEYS[2]) ~= ARGV[1] then
  return 0
end
local held = str(KEYS[1])
if held and held ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
