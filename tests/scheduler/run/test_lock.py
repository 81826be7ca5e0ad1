"""``RunLock``: one scheduler per workload; a crashed one's lock (a dead process of this host)
is taken over at once; a scheduler whose lock was taken over writes nothing more to the workload
(its fence), and a live scheduler's lock never lapses, whatever a step takes (``LockKeeper``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from rqp.errors import WorkloadError
from rqp.ledger import Ledger
from rqp_scheduler import fence
from rqp_scheduler.run import WorkloadRun
from rqp_scheduler.run.lock import LOCK_SECONDS, LockKeeper, LockLost, held_locks


def test_a_second_scheduler_is_refused_with_the_holder_named(world):
    run = world.run(world.pack("locked", [{"n": 1}]))
    other = world.lock_of(run.id, "elsewhere:1")
    with pytest.raises(WorkloadError, match=f"already being scheduled by {run.ctx.me}; wait for it"):
        other.take()
    other.renew()  # never taken: nothing to renew, and nothing of the holder's touched
    run.lock.renew()  # the holder still has it
    assert world.r.get(run.ledger.k.lock) == run.ctx.me.encode()


def test_the_lock_of_a_dead_scheduler_of_this_host_is_taken_over(world):
    run = world.run(world.pack("crashed", [{"n": 1}]))
    run.lock.release()
    led = Ledger(world.r, run.id)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    led.take_lock(f"{socket.gethostname()}:{dead.stdout.strip()}", 30)
    run.lock.take()  # no wait for the TTL
    run.lock.renew()
    run.lock.release()
    led.take_lock(f"{socket.gethostname()}:{os.getppid()}", 30)  # alive
    with pytest.raises(WorkloadError, match="already being scheduled"):
        run.lock.take()


def test_each_take_is_a_new_generation_of_the_fence(world):
    wid = world.pack("generations", [{"n": 1}])
    a, b = world.lock_of(wid, "a:1"), world.lock_of(wid, "b:2")
    a.take()
    assert a.token == "1 a:1" and world.r.get(a.key) == b"1 a:1"
    a.release()
    b.take()
    assert b.token == "2 b:2"
    with pytest.raises(LockLost, match=f"workload {wid}: another scheduler took over its lock"):
        fence.fenced(world.r, a).set(f"rqp:w:{wid}:probe", "a")  # released, then taken by b: a writes nothing
    assert world.r.get(f"rqp:w:{wid}:probe") is None
    fence.fenced(world.r, b).set(f"rqp:w:{wid}:probe", "b")
    assert world.r.get(f"rqp:w:{wid}:probe") == b"b" and world.r.get(b.ledger.k.lock) == b"b:2"


def test_the_keeper_renews_the_lock_while_a_step_takes_longer_than_its_ttl(world):
    wid = world.pack("long-step", [{"n": 1}])
    a = world.run(wid)
    assert a.lock in held_locks()  # taken: the process's keeper renews it from now on
    world.r.expire(a.ledger.k.lock, 2)  # as if the last renewal was 28 s ago
    keeper = LockKeeper(every=0.05)
    keeper.start()
    try:
        deadline = time.monotonic() + 10
        while world.r.ttl(a.ledger.k.lock) <= 2:  # the step (this wait) never renews it itself
            assert time.monotonic() < deadline, "the keeper never renewed the lock"
            time.sleep(0.01)
    finally:
        keeper.stop()
    assert world.r.ttl(a.ledger.k.lock) > LOCK_SECONDS - 5 and not a.lock.lost.is_set()


def test_a_lock_is_renewed_from_its_take_while_the_run_starts(world, monkeypatch):
    """The thirteenth review, F4: only the runs in ``Scheduler.runs`` were renewed, so a start
    longer than the TTL (a setup() loading a model) lost the lock to a serving scheduler."""
    wid = world.pack("slow-start", [{"n": 1}])
    seen = []
    original = WorkloadRun.start

    def start_then_look(self):
        self.lock.take = _wrap(self.lock.take, lambda: seen.append(self.lock in held_locks()))
        return original(self)

    monkeypatch.setattr(WorkloadRun, "start", start_then_look)
    world.run(wid)
    assert seen == [True]  # held (renewed by the keeper) the moment it is taken, before the start goes on


def _wrap(f, after):
    def wrapped():
        f()
        after()

    return wrapped


def test_a_released_lock_is_not_taken_back_by_the_keeper(world):
    wid = world.pack("released", [{"n": 1}])
    a = world.run(wid)
    a.lock.release()
    assert a.lock not in held_locks()
    LockKeeper(lambda: [a.lock]).renew_all()
    assert world.r.exists(a.ledger.k.lock) == 0


def test_a_renewal_never_lands_across_a_release(world, monkeypatch):
    """The thirteenth review, F8: the keeper past its check, its script sent after the release,
    put the ended run's lock back for a TTL. Renew and release now exclude each other."""
    wid = world.pack("release-race", [{"n": 1}])
    a = world.run(wid)
    in_renew, release_done = threading.Event(), threading.Event()
    original = a.lock.ledger.renew_lock

    def slow_renew(*args):
        in_renew.set()
        release_done.wait(0.5)  # the release tries to land here (it must wait for the renewal)
        return original(*args)

    monkeypatch.setattr(a.lock.ledger, "renew_lock", slow_renew)
    renewer = threading.Thread(target=a.lock.renew)
    renewer.start()
    assert in_renew.wait(5)
    a.lock.release()
    release_done.set()
    renewer.join(5)
    assert world.r.exists(a.ledger.k.lock) == 0  # released after the renewal, not undone by it


def test_a_run_whose_redis_lost_everything_says_so_and_how_to_resume(world):
    wid = world.pack("flushed", [{"n": 1}])
    a = world.run(wid)
    world.r.flushall()  # Redis lost its data: the lock and its fence with the rest
    with pytest.raises(LockLost, match=f"gone from Redis .* resume it with 'rqp-scheduler run {wid}'"):
        a.step()
    assert world.r.dbsize() == 0  # the old run wrote nothing into the empty Redis
