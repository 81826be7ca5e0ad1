-- Shared by the leader scripts: a key's string value, or false when it holds none. A key of
-- another type is junk a Redis writer left (rqp writes these keys only as strings): it is
-- deleted, so junk can delay a takeover by one lease at most, never wedge it. (GET under pcall,
-- not TYPE: the scheduler's ACL user needs no command beyond what it already runs.)
local function str(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' and value.err then
    redis.call('DEL', key)
    return false
  end
  return value
end

-- generations stay below 2^53 (exact in a Lua double, and in a JSON number); one at or above
-- it is junk a Redis writer left, as is one that is not digits
local MAX_GENERATION = 9007199254740991

-- the generation at the head of a "<generation> <holder>" value (0 for junk or nothing)
local function generation(value)
  local digits = string.match(value or '', '^(%d+) ')
  if not digits or #digits > 16 then
    return 0
  end
  local gen = tonumber(digits)
  if not gen or gen >= MAX_GENERATION then
    return 0
  end
  return gen
end

-- a generation as the digits rqp writes (tostring would give "1e+14" past 14 digits)
local function generation_text(gen)
  return string.format('%d', gen)
end
