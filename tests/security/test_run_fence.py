"""A scheduler whose workload lock was taken over writes nothing more to that workload (the
lock's fence, ``rqp_scheduler.fence``), as a paused scheduler and as a Redis writer forging the
lock or its fence would try it. The worst a forger gets is a stall: the run stops, its lock
lapses, and a serving scheduler takes the workload over (``tests/scheduler/test_lapsed_takeover.py``).
"""

from __future__ import annotations

import threading

import pytest

from rqp.errors import WorkloadError
from rqp.ledger import Ledger, Meta
from rqp_scheduler import fence
from rqp_scheduler.run import WorkloadRun
from rqp_scheduler.run import context as run_context
from rqp_scheduler.run.lock import LOCK_SECONDS, LockKeeper, LockLost, RunLock


def _lock_of(world, wid: str, me: str) -> RunLock:
    return RunLock(world.r, wid, me)


def _run_as(world, monkeypatch, wid: str, me: str) -> WorkloadRun:
    """``wid``'s run started by a scheduler that calls itself ``me`` (another host's, say)."""
    with monkeypatch.context() as m:
        m.setattr(run_context, "process_identity", lambda: me)
        return WorkloadRun(world.backends(), wid).start()


def _lapse(world, wid: str) -> None:
    """The lock's TTL runs out (its holder paused, frozen or cut off for longer than it)."""
    assert world.r.delete(Ledger(world.r, wid).k.lock) == 1


def _snapshot(world, wid: str) -> dict[bytes, bytes | None]:
    keys = sorted(world.r.scan_iter(match=f"rqp:w:{wid}:*"))
    return {k: world.r.dump(k) for k in keys if not k.endswith((b":lock", b":fence"))}


def test_a_scheduler_whose_lock_was_taken_over_writes_nothing_more(world, monkeypatch, proc):
    wid = world.pack("fenced", [{"n": n} for n in range(12)])
    a = world.run(wid)
    a.step()
    world.work(proc)
    _lapse(world, wid)  # a was paused past its TTL...
    b = _run_as(world, monkeypatch, wid, "other-host:7")  # ...and another scheduler took over
    before = _snapshot(world, wid)
    with pytest.raises(LockLost, match="another scheduler took over its lock"):
        a.step()  # a wakes up: its first write raises before anything is sent
    with pytest.raises(LockLost):
        a.ctx.r.hset(a.ledger.k.meta, Meta.STATE, "failed")
    with pytest.raises(LockLost):
        a.finisher.fail("a thinks it failed", generic="a thinks it failed")
    assert _snapshot(world, wid) == before  # not one key of the workload changed
    assert a.lock.lost.is_set()
    world.run_to_end(b, proc)  # b carries it to the end, exactly
    snap = Ledger(world.r, wid).snapshot()
    assert (snap["meta"][Meta.STATE], snap["done"], snap["failed"]) == ("done", 12, 0)


def test_a_write_between_the_check_and_the_exec_is_discarded(world, monkeypatch):
    wid = world.pack("discarded", [{"n": 1}])
    a = world.run(wid)
    taken = []
    original = fence.FencedPipeline._check_fences

    def check_then_taken_over(self):
        original(self)
        if not taken:  # the take-over lands after a's check, before its EXEC
            _lapse(world, wid)
            _lock_of(world, wid, "other-host:7").take()
            taken.append(1)

    monkeypatch.setattr(fence.FencedPipeline, "_check_fences", check_then_taken_over)
    with pytest.raises(LockLost, match="Redis discarded the write"):
        a.ctx.r.set(f"rqp:w:{wid}:probe", "a")
    assert world.r.get(f"rqp:w:{wid}:probe") is None
    assert taken == [1]


def test_a_fence_rewritten_with_its_own_value_is_no_take_over(world, monkeypatch):
    wid = world.pack("same-value", [{"n": 1}])
    a = world.run(wid)
    rewrites = []
    original = fence.FencedPipeline._check_fences

    def check_then_touched(self):
        original(self)
        if len(rewrites) < 2:  # a Redis writer SETs the fence to what it holds: WATCH fires
            world.r.set(a.lock.key, a.lock.token)
            rewrites.append(1)

    monkeypatch.setattr(fence.FencedPipeline, "_check_fences", check_then_touched)
    a.ctx.r.set(f"rqp:w:{wid}:probe", "a")  # discarded twice, sent a third time
    assert world.r.get(f"rqp:w:{wid}:probe") == b"a" and len(rewrites) == 2
    assert not a.lock.lost.is_set()


def test_junk_in_the_fence_stops_the_run_and_the_lock_is_taken_again(world, monkeypatch):
    wid = world.pack("junk-fence", [{"n": 1}])
    a = world.run(wid)
    world.r.delete(a.lock.key)
    world.r.hset(a.lock.key, "x", "y")  # another type: names nobody
    with pytest.raises(LockLost):
        a.ctx.r.set(f"rqp:w:{wid}:probe", "a")
    _lapse(world, wid)
    b = _run_as(world, monkeypatch, wid, "other-host:7")
    assert b.lock.token == "1 other-host:7"  # the junk was deleted, the generation starts again


def test_a_lock_without_a_ttl_is_given_one_then_taken(world):
    wid = world.pack("no-ttl", [{"n": 1}])
    lock = Ledger(world.r, wid).k.lock
    world.r.set(lock, "forged:1")  # no TTL: not one rqp wrote
    with pytest.raises(WorkloadError, match="already being scheduled by forged:1"):
        _lock_of(world, wid, "a:1").take()
    assert 0 < world.r.ttl(lock) <= LOCK_SECONDS


def test_the_keeper_marks_a_lock_taken_over_as_lost_and_leaves_the_new_holder_alone(world, monkeypatch):
    wid = world.pack("keeper-lost", [{"n": 1}])
    a = world.run(wid)
    _lapse(world, wid)
    b = _run_as(world, monkeypatch, wid, "other-host:7")
    LockKeeper(lambda: [a.lock, b.lock], threading.Event()).renew_all()
    assert a.lock.lost.is_set() and not b.lock.lost.is_set()
    assert world.r.get(a.ledger.k.lock) == b"other-host:7"
