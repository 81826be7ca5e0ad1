"""The worker's spare script host: ready before the worker registers, and the next one started
only while the worker has nothing to do -- never beside a workload's records, whose CPU a
starting interpreter (~20 ms of it) would take."""

from __future__ import annotations

from world import world  # noqa: F401 - fixture

from rqp_processor.worker import build_worker


def test_a_worker_registers_with_its_spare_confined(world):  # noqa: F811
    worker = build_worker(world.settings, name="spare-ready")
    try:
        factory = worker.processor.pool.factory
        assert factory.started == 1
        assert not worker.processor.pool.wants_spare
        spare = factory._spare
        assert spare is not None and spare._ready  # confined and reported before build_worker returned
        assert spare.protections.report.get("seccomp")
    finally:
        worker.processor.pool.close()


def test_the_next_spare_waits_until_the_queues_are_empty(world):  # noqa: F811
    worker = build_worker(world.settings, name="spare-idle")
    pool = worker.processor.pool
    try:
        wid = world.pack("spare-w", [{"n": i} for i in range(20)])
        world.run(wid).step()  # the workload's chunks are queued
        queued = sum(world.r.llen(q.key) for q in worker._ordered_queues)
        assert queued > 1
        pool.factory.take("elsewhere").close()  # a workload took the spare
        assert pool.wants_spare
        worker._spare_when_idle()  # work is waiting: no interpreter starts beside it
        assert pool.wants_spare and pool.factory.started == 1
        worker.work(burst=True, max_jobs=1)  # one chunk: its host starts then (none was waiting)
        assert pool.factory.started == 2 and pool.wants_spare  # and no spare beside it
        worker.work(burst=True)  # the other chunks; its last look finds the queues empty
        assert sum(world.r.llen(q.key) for q in worker._ordered_queues) == 0
        assert world.r.bitcount(f"rqp:w:{wid}:done") > 0
        assert not pool.wants_spare
        assert pool.factory.started == 3  # the spare, started once idle
    finally:
        pool.close()
