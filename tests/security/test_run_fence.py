"""A scheduler whose workload lock was taken over writes nothing more to that workload (the
lock's fence, ``rqp_scheduler.fence``), as a paused scheduler and as a Redis writer forging the
lock or its fence would try it. The worst a forger gets is a stall: the run stops, its lock
lapses, and a serving scheduler takes the workload over (``tests/scheduler/test_lapsed_takeover.py``).
"""

from __future__ import annotations

import json

import pytest
import redis

from rqp.errors import WorkloadError
from rqp.ledger import Ledger, Meta
from rqp.workload import blob_name
from rqp_scheduler import fence
from rqp_scheduler.run import WorkloadRun
from rqp_scheduler.run.lock import LOCK_SECONDS, LockKeeper, LockLost


def test_a_scheduler_whose_lock_was_taken_over_writes_nothing_more(world, monkeypatch, proc):
    wid = world.pack("fenced", [{"n": n} for n in range(12)])
    a = world.run(wid)
    a.step()
    world.work(proc)
    world.lapse(wid)  # a was paused past its TTL...
    b = world.run_as(monkeypatch, wid, "other-host:7")  # ...and another scheduler took over
    before = world.snapshot(wid)
    with pytest.raises(LockLost, match="another scheduler took over its lock"):
        a.step()  # a wakes up: its first write raises before anything is sent
    with pytest.raises(LockLost):
        a.ctx.r.hset(a.ledger.k.meta, Meta.STATE, "failed")
    with pytest.raises(LockLost):
        a.finisher.fail("a thinks it failed", generic="a thinks it failed")
    assert world.snapshot(wid) == before  # not one key of the workload changed
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
            world.lapse(wid)
            world.lock_of(wid, "other-host:7").take()
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
    world.lapse(wid)
    b = world.run_as(monkeypatch, wid, "other-host:7")
    assert b.lock.token == "1 other-host:7"  # the junk was deleted, the generation starts again


def test_a_lock_without_a_ttl_is_given_one_then_taken(world):
    wid = world.pack("no-ttl", [{"n": 1}])
    lock = Ledger(world.r, wid).k.lock
    world.r.set(lock, "forged:1")  # no TTL: not one rqp wrote
    with pytest.raises(WorkloadError, match="already being scheduled by forged:1"):
        world.lock_of(wid, "a:1").take()
    assert 0 < world.r.ttl(lock) <= LOCK_SECONDS


def test_the_keeper_marks_a_lock_taken_over_as_lost_and_leaves_the_new_holder_alone(world, monkeypatch):
    wid = world.pack("keeper-lost", [{"n": 1}])
    a = world.run(wid)
    world.lapse(wid)
    b = world.run_as(monkeypatch, wid, "other-host:7")
    LockKeeper(lambda: [a.lock, b.lock]).renew_all()
    assert a.lock.lost.is_set() and not b.lock.lost.is_set()
    assert world.r.get(a.ledger.k.lock) == b"other-host:7"


def test_a_write_whose_exec_reply_was_lost_is_not_sent_again(world, monkeypatch):
    """The thirteenth review, F2: redis-py names a connection lost while WATCHing a WatchError,
    and the fenced client sent the transaction again -- applied twice when Redis had run it.
    Redis runs the EXEC here, and its reply is lost on the way back."""
    wid = world.pack("exec-lost", [{"n": 1}])
    a = world.run(wid)
    key = f"rqp:w:{wid}:probe"
    armed = [True]
    original = redis.client.Pipeline.parse_response

    def reply_lost(self, connection, command_name, **options):
        response = original(self, connection, command_name, **options)
        if armed and isinstance(response, list):  # EXEC's reply: the transaction ran
            armed.clear()
            raise redis.ConnectionError("the connection dropped before EXEC's reply")
        return response

    monkeypatch.setattr(redis.client.Pipeline, "parse_response", reply_lost)
    with pytest.raises(redis.ConnectionError, match="Redis went away while a fenced write was sent"):
        a.ctx.r.incr(key)
    assert world.r.get(key) == b"1"  # run once, never sent again
    assert not a.lock.lost.is_set()  # an outage, not a take-over: the loop rides it out


def test_a_fence_rewritten_in_a_loop_stops_that_run_not_the_leader(world, monkeypatch):
    """The thirteenth review, F3: every write discarded, the leader lease was given up -- the whole
    service exited 75 for one workload's fence. Now that workload's run stops, the leader leads."""
    from rqp_scheduler.leader import LeaderLease

    wid = world.pack("fence-loop", [{"n": 1}])
    lease = LeaderLease(world.r, 30, me="leader:1")
    assert lease.try_take() is None
    run_lock = world.lock_of(wid, "leader:1")
    run_lock.take()
    client = fence.fenced(lease.fenced(), run_lock)
    original = fence.FencedPipeline._check_fences

    def check_then_touched(self):
        original(self)
        world.r.set(run_lock.key, run_lock.token)  # a writer re-writing it with its own value, always

    monkeypatch.setattr(fence.FencedPipeline, "_check_fences", check_then_touched)
    with pytest.raises(LockLost, match="fence keeps being rewritten behind rqp's back"):
        client.set(f"rqp:w:{wid}:probe", "x")
    assert world.r.get(f"rqp:w:{wid}:probe") is None
    assert run_lock.lost.is_set() and not lease.lost.is_set()
    monkeypatch.undo()
    lease.fenced().set("still-leading", "1")  # the leader's own writes go on
    assert world.r.get("still-leading") == b"1"


def test_a_huge_forged_holder_is_not_copied_into_the_error(world):
    """The thirteenth review, F7: a 5 MiB lock value became a 5 MiB error message and log line."""
    wid = world.pack("huge-holder", [{"n": 1}])
    world.r.set(Ledger(world.r, wid).k.lock, "x" * 5_000_000, ex=30)
    with pytest.raises(WorkloadError) as caught:
        world.lock_of(wid, "a:1").take()
    assert len(str(caught.value)) < 300 and "5000000 characters" in str(caught.value)


def _paused_at_check(world, monkeypatch, wid: str, proc, check_no: int) -> tuple[WorkloadRun, WorkloadRun]:
    """P consolidates; at its ``check_no``-th look at its lock (1: before the swap of its staged
    blobs, 2: before its summary) it is "paused": its lock lapses, S takes the workload over and
    ends it; then P wakes up and goes on from that look."""
    p = world.run(wid)
    for _ in range(100):  # every record done, P about to consolidate
        p.enqueuer.fill_window()
        if not world.work(proc):
            break
    taken: list[WorkloadRun] = []
    real_renew = p.lock.renew
    looks = [0]

    def paused_then_wakes() -> None:
        looks[0] += 1
        if looks[0] == check_no and not taken:
            world.lapse(wid)
            s = world.run_as(monkeypatch, wid, "other-host:7")
            world.run_to_end(s, proc)
            taken.append(s)
        real_renew()

    monkeypatch.setattr(p.lock, "renew", paused_then_wakes)
    with pytest.raises(LockLost):
        p.finisher.finish()
    assert taken, "the take-over never happened"
    return p, taken[0]


def _results(world, wid: str) -> dict[int, int]:
    from rqp.results import read_results

    lines = [json.loads(x) for x in read_results(world.store, world.backends().workload(wid))]
    assert len(lines) == len({d["id"] for d in lines}), "a record's result twice"
    return {d["id"]: d["result"] for d in lines}


@pytest.mark.parametrize("check_no", [1, 2], ids=["before-the-swap", "before-the-summary"])
def test_a_consolidation_paused_past_its_lock_leaves_the_new_holders_end_intact(world, monkeypatch, proc, check_no):
    """The thirteenth review, F5: a scheduler paused during consolidation and woken after another
    took over and ended the workload moved the shared staged names, wrote its summary over the
    other's and deleted every part -- the workload stuck, or its results refused. Now its staged
    names are its own, it looks at its lock before each step a reader sees, and it deletes what it
    used up only after its (fenced) end in Redis: it stops at its next look, having changed nothing
    a reader reads."""
    wid = world.pack(f"paused-{check_no}", [{"n": n} for n in range(20)])
    _paused_at_check(world, monkeypatch, wid, proc, check_no)
    snap = Ledger(world.r, wid).snapshot()
    assert (snap["meta"][Meta.STATE], snap["done"]) == ("done", 20)
    assert _results(world, wid) == {n: n * 2 for n in range(20)}  # S's results, read against S's summary
    assert not list(world.store.list(blob_name(wid, "parts/")))  # S deleted them after its own end
    staged = [n for n in world.store.list(blob_name(wid, "")) if ".staged" in n]
    assert staged == [], staged  # P's own staged blobs went with its failure, S's were swapped in
