-- LEADER_TAKE: a serving scheduler takes the leader lease when nobody holds it.
-- KEYS[1] lease  string "<generation> <holder>" with a TTL: who leads now; the leader renews it
-- KEYS[2] fence  string "<generation> <holder>", no TTL: the latest leader. Every write a
--                scheduler makes runs in a transaction that WATCHes this key and first checks it
--                still names that scheduler, so one whose lease was taken acts on nothing.
-- ARGV[1] this scheduler (host:pid)   ARGV[2] lease milliseconds   ARGV[3] lease seconds (rounded up)
-- returns {1, token, former fence} when taken (token: the new "<generation> <holder>"), or
--         {0, the lease's holder, ""} while another scheduler's lease runs.
-- A lease without a TTL is not one rqp wrote (junk): it is given one lease of life (EXPIRE NX),
-- then taken over like a lapsed one. A lease held under this scheduler's own name (a restarted
-- container keeps its host name and pid 1, or this process stepped down) is its own: taken at
-- once, under a new generation.
local held = str(KEYS[1])
local holder = string.match(held or '', '^%d+ (.*)$')
if held and holder ~= ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[3], 'NX')
  return {0, held, ''}
end
local former = str(KEYS[2]) or ''
local gen = math.max(generation(former), generation(held))
local token = generation_text(gen + 1) .. ' ' .. ARGV[1]
redis.call('SET', KEYS[2], token)
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return {1, token, former}
