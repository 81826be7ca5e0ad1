-- PUT: the scheduler's enqueue stores sealed records and statuses (one argument each instead of
-- four per record, which would otherwise dominate the client's CPU).
-- KEYS[1] rec      hash  record id -> sealed record
-- KEYS[2] st       hash  record id -> sealed status
-- ARGV[1] packed sealed records (u32 id, u32 length, bytes)*
-- ARGV[2] packed sealed statuses, same form
-- returns 1
hset_packed(KEYS[1], ARGV[1])
hset_packed(KEYS[2], ARGV[2])
return 1
