"""A Redis writer who sends SCRIPT FLUSH in a loop costs rqp round trips, never a workload.

Every Lua script rqp runs goes by EVALSHA and, when Redis answers NOSCRIPT, by SCRIPT LOAD and
EVALSHA in one MULTI/EXEC (``rqp.ledger.LuaScript``): no flush falls between them, so none, however
often, reaches a role as an error. Before, redis-py's ``Script`` loaded the script and tried EVALSHA once more; a
flusher in a tight loop made both fail and the scheduler failed the workload as "unexpected
NoScriptError" (the eleventh review, F4).
"""

from __future__ import annotations

import threading

import redis
from world import world  # noqa: F401 - fixture

from rqp.ledger import register_script
from rqp_scheduler.leader import LeaderLease


class Flusher:
    """SCRIPT FLUSH as fast as one connection can send it, until stopped; counts its flushes."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url)
        self.stop = threading.Event()
        self.flushes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.r.script_flush()
            self.flushes += 1

    def __enter__(self) -> Flusher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.r.close()


def _calls(r: redis.Redis, command: str) -> int:
    return int(r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_script_run_after_a_flush_is_loaded_and_run_in_one_transaction(r):
    script = register_script(r, "return ARGV[1]")
    assert script(args=["before"]) == b"before"
    r.script_flush()
    loads, execs = _calls(r, "script|load"), _calls(r, "exec")
    assert script(args=["after"]) == b"after"
    assert (_calls(r, "script|load"), _calls(r, "exec")) == (loads + 1, execs + 1)


def test_a_workload_runs_to_done_while_a_writer_flushes_the_scripts_in_a_loop(world):  # noqa: F811
    wid = world.pack("flushed", [{"n": i} for i in range(40)])
    run = world.run(wid)
    proc = world.processor()
    url = world.r.connection_pool.connection_kwargs
    with Flusher(f"redis://{url['host']}:{url['port']}/{url.get('db', 0)}") as flusher:
        try:
            world.run_to_end(run, proc)
        finally:
            proc.pool.close()
    assert flusher.flushes > 0
    assert world.r.hget(run.ledger.k.meta, "state") == b"done"
    assert world.r.bitcount(run.ledger.k.done) == 40
    assert not world.refused


def test_the_leader_lease_is_taken_kept_and_released_while_a_writer_flushes_the_scripts(redis_url):
    r = redis.Redis.from_url(redis_url)
    lease = LeaderLease(r, seconds=30, me="flushed-leader")
    with Flusher(redis_url) as flusher:
        assert lease.try_take() is None  # None: this scheduler took it (no other holder)
        assert lease.token is not None
        assert all(lease.renew() for _ in range(20))
        lease.release()
    assert flusher.flushes > 0
    assert not lease.lost.is_set()
    r.close()
