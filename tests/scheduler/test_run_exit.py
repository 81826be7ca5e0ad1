"""``rqp-scheduler run`` exits as soon as its last workload has ended (issue 28 item 4): its loop
waited once more (``WAIT_IDLE``, 1 s) after the step that finished the workload before it looked
at whether anything was left -- a second on every run, 10 % of a 10-second workload's
efficiency."""

from __future__ import annotations

import time

from world import world  # noqa: F401 - fixture

from rqp_scheduler.scheduler import WAIT_IDLE, Scheduler


def test_the_loop_returns_right_after_the_step_that_finishes_the_last_workload(world):  # noqa: F811
    wid = world.pack("exits", [{"n": n} for n in range(12)])
    sched = Scheduler(world.settings)
    proc = world.processor()
    try:
        sched.add(wid)
        for _ in range(100):  # every record committed; the next step consolidates and finishes
            sched.tick()
            world.work(proc)
            if world.r.bitcount(f"rqp:w:{wid}:done") == 12:
                break
        assert wid in sched.runs
        sched.loop()
        returned = time.time()
    finally:
        proc.pool.close()
        sched.hosts.close()
    assert wid in sched.summaries and not sched.runs
    finished = float(world.r.hget(f"rqp:w:{wid}:meta", "finished_at"))
    assert returned - finished < WAIT_IDLE / 2, returned - finished  # was WAIT_IDLE and more
