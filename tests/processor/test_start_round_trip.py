"""Starting a chunk is one round trip: the start script by EVALSHA and the chunk's records read in
one pipeline. redis-py's own pipelined scripts sent SCRIPT EXISTS before every such pipeline (one
more round trip per chunk, issue 28); a Redis that lost its scripts (restarted, failed over)
answers NOSCRIPT, and the start is sent again behind SCRIPT LOAD in one transaction."""

from __future__ import annotations

import redis
from world import world  # noqa: F401 - fixture


def _calls(r: redis.Redis, command: str) -> int:
    return int(r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_chunk_starts_without_script_exists_and_after_redis_lost_its_scripts(world):  # noqa: F811
    wid = world.pack("one-trip", [{"n": i} for i in range(24)])
    run = world.run(wid)
    proc = world.processor()
    try:
        run.step()  # the first window: 3 chunks of 4 records
        exists = _calls(world.r, "script|exists")
        assert world.work(proc) == 3
        assert _calls(world.r, "script|exists") == exists
        world.r.script_flush()  # as a restarted Redis without them
        loads = _calls(world.r, "script|load")
        world.run_to_end(run, proc)
        assert _calls(world.r, "script|load") > loads  # loaded again, once it answered NOSCRIPT
        assert _calls(world.r, "script|exists") == exists
    finally:
        proc.pool.close()
    assert world.r.hget(run.ledger.k.meta, "state") == b"done"
    assert not world.refused
