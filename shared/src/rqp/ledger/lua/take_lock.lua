-- TAKE_LOCK: a scheduler takes a workload's lock when nobody holds it, when it holds it itself
-- (a workload opened again by the same process), or when its holder is known to be gone (a
-- process of this host that no longer exists: the caller checked).
-- KEYS[1] lock  KEYS[2] fence   (as in _lock.lua)
-- ARGV[1] this scheduler (host:pid)   ARGV[2] seconds to live   ARGV[3] the holder known gone ("": none)
-- returns {1, token} when taken -- token: the fence's new "<generation> <holder>", one generation
--         above the last, so every earlier holder's writes are refused from now on --
--         or {0, holder} while another scheduler holds it.
-- A lock without a TTL is not one rqp wrote (junk): it is given one TTL of life, then taken like a
-- lapsed one.
local held = str(KEYS[1])
if held and held ~= ARGV[1] and (ARGV[3] == '' or held ~= ARGV[3]) then
  redis.call('EXPIRE', KEYS[1], ARGV[2], 'NX')
  return {0, held}
end
local token = string.format('%d', generation(str(KEYS[2])) + 1) .. ' ' .. ARGV[1]
redis.call('SET', KEYS[2], token)
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {1, token}
