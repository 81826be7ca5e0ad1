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
-- bits a..b (inclusive) of a bitmap to 1: whole bytes in one SETRANGE, the edges bit by bit, so
-- a chunk of thousands of done records costs a few commands (and a few bytes of AOF)
local function set_bits(key, a, b)
  local first_full = math.floor((a + 7) / 8)
  local last_full = math.floor((b + 1) / 8) - 1
  if first_full > last_full then
    for i = a, b do redis.call('SETBIT', key, i, 1) end
    return
  end
  for i = a, first_full * 8 - 1 do redis.call('SETBIT', key, i, 1) end
  redis.call('SETRANGE', key, first_full, string.rep('\255', last_full - first_full + 1))
  for i = (last_full + 1) * 8, b do redis.call('SETBIT', key, i, 1) end
end
