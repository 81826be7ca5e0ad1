-- Prepended to the scripts that need them (Lua in Redis has no include).
-- Record ids travel as one comma-separated string and sealed values as one packed blob of
-- (u32 id, u32 length, bytes)*: a handful of arguments per chunk instead of thousands keeps the
-- client's command packing off the hot path.
local function ids(s)
  local t = {}
  for id in string.gmatch(s, '%d+') do t[#t + 1] = id end
  return t
end
local function hset_packed(key, blob)
  local pos, n, args = 1, #blob, {}
  while pos <= n do
    local id, len, p = struct.unpack('>I4>I4', blob, pos)
    args[#args + 1] = id
    args[#args + 1] = string.sub(blob, p, p + len - 1)
    pos = p + len
    if #args >= 4000 then redis.call('HSET', key, unpack(args)); args = {} end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end
local function each_slice(t, f)
  for i = 1, #t, 4000 do f(unpack(t, i, math.min(i + 3999, #t))) end
end
