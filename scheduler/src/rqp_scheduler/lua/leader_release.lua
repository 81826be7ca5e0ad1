-- LEADER_RELEASE: a leader stopping on request hands its lease on at once (a standby need not
-- wait for it to lapse). The fence stays: the next leader's generation is one higher.
-- KEYS[1] lease  KEYS[2] fence   (as in leader_take.lua)
-- ARGV[1] this leader's token "<generation> <holder>"
-- returns 1 when the lease was this leader's and is released, 0 otherwise
if str(KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
