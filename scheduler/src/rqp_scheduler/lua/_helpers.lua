-- Shared by the leader scripts: a key's string value, or false when it holds none. A key of
-- another type is junk a Redis writer left (rqp writes these keys only as strings): it is
-- deleted, so junk can delay a takeover by one lease at most, never wedge it.
local function str(key)
  local t = redis.call('TYPE', key)['ok']
  if t == 'string' then
    return redis.call('GET', key)
  end
  if t ~= 'none' then
    redis.call('DEL', key)
  end
  return false
end

-- the generation at the head of a "<generation> <holder>" value (0 for junk or nothing)
local function generation(value)
  return tonumber(string.match(value or '', '^(%d+) ')) or 0
end
