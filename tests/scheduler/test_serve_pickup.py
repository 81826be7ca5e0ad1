"""A serving scheduler with nothing to run takes a submission within ~0.1 s (issue 28 item 4:
submission is ``rqp submit`` to a warm service, as deployed). It slept 1 s between looks, so a
workload submitted to an idle service waited 0.5 s on average before its first record was read."""

from __future__ import annotations

import threading
import time

from world import world  # noqa: F401 - fixture

from rqp.ledger import SUBMISSIONS, submit
from rqp_scheduler.scheduler import WAIT_IDLE_SERVING, Scheduler


def test_an_idle_service_takes_a_submission_within_its_short_wait(world):  # noqa: F811
    sched = Scheduler(world.settings)
    loop = threading.Thread(target=sched.loop, kwargs={"serve": True}, daemon=True)
    loop.start()
    waits = []
    try:
        for k in range(6):
            # an id no workload has: refused and recorded, which is how its pickup shows
            t0 = time.monotonic()
            submit(world.r, f"never-packed-{k}")
            while world.r.llen(SUBMISSIONS):
                assert time.monotonic() - t0 < 10, "the service never took the submission"
                time.sleep(0.005)
            waits.append(time.monotonic() - t0)
            time.sleep(0.037 * k)  # submissions land at different points of the loop's wait
    finally:
        sched.stop.set()
        loop.join(10)
        sched.hosts.close()
    assert not loop.is_alive()
    assert sorted(waits)[len(waits) // 2] < 2 * WAIT_IDLE_SERVING + 0.1, waits  # at 1 s between looks: ~0.5
    assert WAIT_IDLE_SERVING <= 0.1
