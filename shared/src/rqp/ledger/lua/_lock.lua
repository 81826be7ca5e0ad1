-- Prepended to the lock scripts (take_lock, renew_lock, release_lock).
-- KEYS[1] lock   string  the scheduler supervising the workload (host:pid), with a TTL it renews
-- KEYS[2] fence  string  "<generation> <holder>", no TTL: the latest scheduler to take the lock.
--                Every write of a workload's run WATCHes it after checking it still names that
--                run (rqp_scheduler.fence), so a scheduler whose lock was taken writes nothing.

-- a key's string value, or false when it holds none; a key of another type is junk a Redis
-- writer left (rqp writes these keys only as strings): deleted, so junk never wedges the lock
local function str(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' and value.err then
    redis.call('DEL', key)
    return false
  end
  return value
end

-- the generation at the head of a "<generation> <holder>" value (0 for junk or nothing);
-- generations stay below 2^53 (exact in a Lua double)
local function generation(value)
  local digits = string.match(value or '', '^(%d+) ')
  if not digits or #digits > 16 then
    return 0
  end
  local gen = tonumber(digits)
  if not gen or gen >= 9007199254740991 then
    return 0
  end
  return gen
end
