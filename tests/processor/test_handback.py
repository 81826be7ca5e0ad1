"""``CommitWatch``: a commit that Redis lost (a rollback put the job back in pending under this
worker's lease) is handed back at once; a job back in pending under anyone else's lease is not."""

from __future__ import annotations

import time

import pytest

from rqp.ledger import Ledger


@pytest.fixture
def proc(world):
    p = world.processor()
    yield p
    p.pool.close()


def _dump(r) -> dict[bytes, bytes]:
    return {k: r.dump(k) for k in r.keys("*")}


def _restore(r, dumped: dict[bytes, bytes]) -> None:
    """Redis as it was at ``_dump``: what a restart from that snapshot leaves."""
    r.flushdb()
    for k, v in dumped.items():
        r.restore(k, 0, v)


def _started_then_rolled_back(world, proc, name: str):
    """One chunk started by ``proc`` (the snapshot is taken there, its lease held), committed
    after the snapshot, then Redis restored to the snapshot: the commit is lost."""
    from rqp_scheduler.run import WorkloadRun

    run = WorkloadRun(world.backends(), world.pack(name, [{"n": i} for i in range(4)])).start()
    run.enqueuer.fill_window()
    led = Ledger(world.r, run.id)
    [jid] = led.queued()
    proc.commits.stop()  # the test looks itself (the watch's thread would race it)
    snapshot: dict[bytes, bytes] = {}
    commit = proc._commit

    def snapshot_then_commit(*a, **kw):
        snapshot.update(_dump(world.r))
        return commit(*a, **kw)

    proc._commit = snapshot_then_commit
    assert world.work(proc) == 1
    assert led.lease(jid) is None and int(world.r.bitcount(led.k.done)) == 4  # committed
    _restore(world.r, snapshot)
    return run, led, jid


def test_a_lost_commit_is_handed_back_and_the_chunk_reruns_once(world, proc):
    run, led, jid = _started_then_rolled_back(world, proc, "lost")
    deadline = led.lease(jid)
    assert deadline is not None and deadline > time.time() + 1  # the lease it would wait for
    proc.commits.check()
    assert proc.commits.found == 1
    assert led.lease(jid) <= time.time()
    run.reclaimer.expired()  # the scheduler's next pass: re-run, not waited for
    [again] = led.queued()
    assert again == jid[:-1] + "1"
    world.run_to_end(run, proc)  # the finish checks no record is claimed done by two chunks
    assert led.state() == "done" and int(world.r.bitcount(led.k.done)) == 4
    assert led.snapshot()["done"] == 4 and led.snapshot()["failed"] == 0


def test_a_job_back_in_pending_under_another_lease_is_left_alone(world, proc):
    _, led, jid = _started_then_rolled_back(world, proc, "other")
    world.r.zadd(led.k.pending, {jid: time.time() + 300})  # another worker took the replayed job
    proc.commits.check()
    assert proc.commits.found == 0 and led.lease(jid) > time.time() + 200
    world.r.zadd(led.k.pending, {jid: float("inf")})  # its start was lost too: RQ runs it again
    proc.commits.check()
    assert proc.commits.found == 0 and led.lease(jid) == float("inf")
