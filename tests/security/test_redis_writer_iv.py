"""A Redis writer's review, fourth round (F2, F5, F6): a made-up state, summed drained seconds
that reach infinity, and a wipe-and-resubmit of an ended workload. Real Redis and blob store,
the scheduler's and processor's own code in process."""

from __future__ import annotations

import json

from rqp.ledger import Ledger, State, text

#: record 5 always fails (after 2 attempts), every other one succeeds
SCRIPT = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"
N = 200


def _rejected(world, wid: str) -> list[str]:
    return [e["reason"] for e in map(json.loads, world.r.lrange("rqp:rejected", 0, -1)) if e.get("workload") == wid]


def _started(world, proc, wid: str):
    run = world.run(wid)
    for _ in range(2):
        run.step()
        world.work(proc)
    return run


def test_f2_a_made_up_state_is_put_back_and_recorded(world, proc):
    """Was: ``HSET rqp:w:W:meta state zzz`` stayed until the scheduler's final write, nothing in
    rqp:rejected. Now: put back to running within two steps, the forgery recorded."""
    wid = world.pack("made-up-state", [{"n": i} for i in range(N)])
    run = _started(world, proc, wid)
    meta = Ledger(world.r, wid).k.meta
    world.r.hset(meta, "state", "zzz")
    for _ in range(2):
        run.step()
    assert text(world.r.hget(meta, "state")) == State.RUNNING.value
    assert any("(state zzz)" in r and "put back to running" in r for r in _rejected(world, wid))
