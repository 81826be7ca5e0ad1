"""A Redis writer's review, fourth round (F2, F5, F6): a made-up state, summed drained seconds
that reach infinity, and a wipe-and-resubmit of an ended workload. Real Redis and blob store,
the scheduler's and processor's own code in process."""

from __future__ import annotations

import json

from rqp import control
from rqp.ledger import SUBMISSIONS, Ledger, State, text
from rqp.summary import SUMMARY_BLOB, read_summary
from rqp.workload import blob_name, supersede

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


def _strict(raw: bytes) -> object:
    def refuse(token: str) -> object:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(raw, parse_constant=refuse)


def test_f5_forged_drained_seconds_and_preempted_stay_out_of_the_sealed_summary(world, proc):
    """Was: two hosts labelled as one VM with 1e308 drained seconds each summed to ``inf``,
    sealed as ``Infinity``; a 30-digit ``preempted`` count sealed and shown as verified. Now:
    absurd seconds are left out, the count above its bound reads as 0, the summary strict JSON."""
    wid = world.pack("drained-inf", [{"n": i} for i in range(N)])
    run = _started(world, proc, wid)
    meta = Ledger(world.r, wid).k.meta
    world.r.hset(
        meta,
        mapping={
            "drained_seconds:hA": "1e308",
            "drained_seconds:hB": "1e308",
            "drained_seconds:hC": "12.5",
            "preempted": "123456789012345678901234567890",
        },
    )
    world.r.set("rqp:vm:hA", json.dumps({"vm": "X", "priority": "spot"}))
    world.r.set("rqp:vm:hB", json.dumps({"vm": "X", "priority": "regular"}))
    world.run_to_end(run, proc, steps=400)
    s = read_summary(world.store, run.workload)
    assert s.drained_seconds_by_vm == {"hC": 12.5}
    assert s.requeued_after_preemption == 0
    _strict(s.to_json())


def _wipe(world, wid: str) -> None:
    """What the Redis writer does: delete every ``rqp:w:W:*`` key, submit W again."""
    for k in list(world.r.scan_iter(match=f"rqp:w:{wid}:*")):
        world.r.delete(k)
    world.r.rpush(SUBMISSIONS, wid)


def test_f6_a_cancelled_workload_whose_keys_were_deleted_is_not_run_again(world, proc, operator):
    """Was: deleting a cancelled workload's keys and re-submitting it started it afresh, and its
    new summary replaced the sealed one (a signed cancel undone). Now: its sealed summary says it
    ended, so it is not run again, the summary is untouched and the replay is in rqp:rejected."""
    wid = world.pack("wiped", [{"n": i} for i in range(N)])
    run = _started(world, proc, wid)
    assert control.cancel(world.r, operator.key, wid, "ops@test") == "cancelling"
    world.run_to_end(run, proc)
    sealed = world.store.get(blob_name(wid, SUMMARY_BLOB))
    assert read_summary(world.store, run.workload).final_state == "cancelled"
    _wipe(world, wid)
    again = world.run(wid)
    assert again.finished and again.step()
    assert world.queued_jobs() == [] and not world.r.exists(Ledger(world.r, wid).k.meta)
    assert world.store.get(blob_name(wid, SUMMARY_BLOB)) == sealed
    assert any("has ended" in r and "its sealed summary exists" in r for r in _rejected(world, wid))


def test_f6_a_replaced_generation_still_starts_fresh(world, proc):
    """``rqp pack --replace`` after it ended: the old summary moves under superseded/ and the new
    generation seals with a new key, so the check above never stops a genuine re-pack."""
    wid = world.pack("repacked", [{"n": i} for i in range(4)])
    world.run_to_end(world.run(wid), proc)
    _wipe(world, wid)
    assert supersede(world.store, wid)
    world.pack(wid, [{"n": i} for i in range(6)])
    run = world.run(wid)
    assert not run.finished
    world.run_to_end(run, proc)
    assert read_summary(world.store, run.workload).done == 6
