"""``Retrier``: a failed record's due retry goes out in a retry chunk, at its next attempt;
a retry no sealed commit asked for is dropped and logged, never run."""

from __future__ import annotations

import time

from rqp.ledger import ChunkKind, Ledger, rejections

from .conftest import FAILS_ON_FIVE, specs


def _failed_once(world, proc, wid: str):
    """Record 5's first attempt failed: its retry is due (no backoff in this world)."""
    run = world.run(wid)
    run.enqueuer.fill_window()
    world.work(proc)
    return run, Ledger(world.r, wid)


def test_a_due_retry_is_queued_once_at_its_next_attempt(world, proc):
    run, led = _failed_once(world, proc, world.pack("retry", [{"n": i} for i in range(8)], script=FAILS_ON_FIVE))
    assert [e.rid for e in led.due_retries(time.time(), 100)] == [5]
    run.retrier.queue_due()
    retries = [s for s in specs(run.workload, led).values() if ChunkKind.of(s.chunk) is ChunkKind.RETRY]
    assert [s.records() for s in retries] == [[(5, 2)]]
    assert led.due_retries(time.time(), 100) == []  # taken: not queued again
    run.retrier.queue_due()
    assert len(specs(run.workload, led)) == 1


def test_a_retry_no_commit_asked_for_is_dropped(world, proc):
    run, led = _failed_once(world, proc, world.pack("forged", [{"n": i} for i in range(8)], script=FAILS_ON_FIVE))
    world.r.zadd(led.k.retry, {"2:2": 0})  # record 2 succeeded: no commit asked for this
    run.retrier.queue_due()
    [spec] = specs(run.workload, led).values()
    assert spec.records() == [(5, 2)]
    assert [e["job"] for e in rejections(world.r)] == ["retry 2:2"]
    assert world.r.zcard(led.k.retry) == 0
