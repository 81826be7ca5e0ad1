"""A service meets a workload whose lock another scheduler holds (a one-off ``rqp-scheduler run``
on another VM, a scheduler cut off from the others): it is not a failure of the workload. The
service looks again every ``LOCK_LOOK_SECONDS`` and takes the workload over once that lock lapses
-- before, it dropped the workload for good and it stayed "running" with nobody supervising it."""

from __future__ import annotations

import logging
import time

from world import world  # noqa: F401 - fixture

from rqp_scheduler.scheduler import LOCK_LOOK_SECONDS, Scheduler


def test_a_service_takes_a_workload_over_once_the_other_schedulers_lock_lapses(world, caplog):  # noqa: F811
    wid = world.pack("held-elsewhere", [{"n": i} for i in range(10)])
    started = world.run(wid)  # started by another scheduler, which holds its lock from another VM
    started.lock.release()
    started.ledger.take_lock("vm9:4242", 30)
    sched = Scheduler(world.settings)
    sched.serving = True
    try:
        with caplog.at_level(logging.WARNING, logger="rqp.scheduler"):
            sched.resume_unfinished()
            assert wid not in sched.runs and wid not in sched.failures
            assert wid in sched.held_elsewhere
            # looked at again while the other still holds it: it waits, and is not said again
            sched.look_again(time.monotonic() + LOCK_LOOK_SECONDS + 1)
            assert wid not in sched.runs and wid in sched.held_elsewhere
        said = [r.getMessage() for r in caplog.records if wid in r.getMessage()]
        assert len(said) == 1, said
        assert "already being scheduled by vm9:4242" in said[0] and "takes it over when that lock lapses" in said[0]

        world.r.delete(started.ledger.k.lock)  # the other VM is gone: its lock ran out
        sched.look_again(time.monotonic() + LOCK_LOOK_SECONDS + 1)
        run = sched.runs[wid]
        assert wid not in sched.held_elsewhere
        assert world.r.get(started.ledger.k.lock) == run.ctx.me.encode()
        proc = world.processor()
        try:
            world.run_to_end(run, proc)
        finally:
            proc.pool.close()
        assert world.r.hget(started.ledger.k.meta, "state") == b"done"
    finally:
        sched.hosts.close()


def test_a_one_off_run_still_fails_on_a_held_lock(world):  # noqa: F811
    """``rqp-scheduler run`` (not serving) keeps its exit: the holder named, no waiting."""
    wid = world.pack("held-run", [{"n": 1}])
    started = world.run(wid)
    started.lock.release()
    started.ledger.take_lock("vm9:4242", 30)
    sched = Scheduler(world.settings)
    try:
        sched._try_add(wid)
        assert "already being scheduled by vm9:4242" in sched.failures[wid]
        assert not sched.held_elsewhere
    finally:
        sched.hosts.close()
