"""A Redis writer's junk in the list of workloads does not stop a service from starting (atk11
F7): ``rqp-scheduler serve`` resumes the unfinished workloads at start, and a member of
``rqp:workloads`` whose meta is not a hash -- or ``rqp:workloads`` itself not a sorted set -- made
that read raise WRONGTYPE, and the service exit with a traceback at every restart."""

from __future__ import annotations

import logging

from world import world  # noqa: F401 - fixture

from rqp.ledger import WORKLOADS, unfinished
from rqp_scheduler.scheduler import Scheduler


def test_junk_meta_is_skipped_with_one_line_and_the_others_resume(world, caplog):  # noqa: F811
    wid = world.pack("honest", [{"n": i} for i in range(6)])
    world.run(wid).lock.release()  # started, then its scheduler stopped
    world.r.zadd(WORKLOADS, {"junk\nw": 0})
    world.r.set("rqp:w:junk\nw:meta", "not a hash")
    with caplog.at_level(logging.WARNING, logger="rqp.ledger"):
        assert unfinished(world.r) == [wid]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "'junk\\nw'" in lines[0] and "is not rqp's" in lines[0], lines
    sched = Scheduler(world.settings)
    try:
        sched.resume_unfinished()
        assert list(sched.runs) == [wid]
    finally:
        sched.hosts.close()


def test_a_list_of_workloads_that_is_not_rqps_is_one_line(world, caplog):  # noqa: F811
    world.r.set(WORKLOADS, "junk")
    sched = Scheduler(world.settings)
    try:
        with caplog.at_level(logging.ERROR, logger="rqp.scheduler"):
            sched.resume_unfinished()
        assert not sched.runs
        assert any("rqp:workloads is not rqp's" in r.getMessage() for r in caplog.records)
    finally:
        sched.hosts.close()
