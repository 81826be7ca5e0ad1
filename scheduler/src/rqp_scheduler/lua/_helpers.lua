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

-- the generation at the head of a "<generation> <holder>" value (0 for junk or nothing)
local function generation(value)
  return tonumber(string.match(value or '', '^(%d+) ')) or 0
end
