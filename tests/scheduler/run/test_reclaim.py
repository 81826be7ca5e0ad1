"""``Reclaimer``: an expired chunk (its worker lost) is re-run as its next generation with no
attempt spent, a chunk reclaimed for its own reason with the attempt spent, and failed once out
of attempts; a chunk RQ lost or a processor handed back is queued again."""

from __future__ import annotations

import logging
import time

from rqp.ledger import Ledger
from rqp.status import record_status
from rqp_scheduler.run.reclaim import FREE_LOST_RERUNS, LOST_FROM_QUEUE

from .conftest import specs


def _lease(led: Ledger, jid: str, worker: str) -> None:
    """A worker takes ``jid``'s lease (four records, chunk 0) and dies: the lease has run out."""
    assert led.start(
        jid, "c00000000", deadline=time.time() - 1, runs=((0, 4, 1),), sealed_spec=led.spec(jid),
        start_note=b"", worker=worker,
    )  # fmt: skip


def _one_chunk(world, name: str):
    run = world.run(world.pack(name, [{"n": i} for i in range(4)]))
    run.enqueuer.fill_window()
    led = Ledger(world.r, run.id)
    [jid] = led.queued()
    return run, led, jid


def test_an_expired_chunk_runs_again_with_no_attempt_spent_then_fails_out_of_attempts(world):
    """Its worker was lost: a re-run, not an attempt (issue #24 item 26); a reclaim for a reason
    of the chunk's own spends one."""
    run, led, jid = _one_chunk(world, "expired")
    _lease(led, jid, "gone:1")
    run.reclaimer.expired()
    [again] = led.queued()
    assert again == jid[:-1] + "1"
    spec = specs(run.workload, led)[again]
    assert spec.records() == [(0, 1), (1, 1), (2, 1), (3, 1)] and spec.reruns == 1
    _lease(led, again, "gone:2")
    run.reclaimer.reclaim(again, "the test says so")  # not a lost worker: the attempt is spent
    [third] = led.queued()
    assert specs(run.workload, led)[third].records() == [(0, 2), (1, 2), (2, 2), (3, 2)]
    _lease(led, third, "gone:3")
    run.reclaimer.reclaim(third, "the test says so")  # max_attempts = 2: the records fail
    assert led.queued() == [] and led.failed_ids() == [0, 1, 2, 3]
    st = record_status(world.r, run.workload, 3)
    assert (st.state, st.attempts, st.reruns) == ("failed", 2, 1)
    assert st.error == "chunk c00000000 was re-run 2 times: the test says so"


def test_a_chunk_that_keeps_losing_its_worker_spends_attempts_past_the_free_reruns(world):
    """A record that kills its worker every time must still fail: past ``FREE_LOST_RERUNS`` each
    lost worker spends an attempt."""
    run, led, jid = _one_chunk(world, "poison")
    for i in range(FREE_LOST_RERUNS):
        _lease(led, jid, f"gone:{i}")
        run.reclaimer.expired()
        [jid] = led.queued()
        spec = specs(run.workload, led)[jid]
        assert (spec.records()[0], spec.reruns) == ((0, 1), i + 1)
    _lease(led, jid, "gone:again")
    run.reclaimer.expired()
    [jid] = led.queued()
    assert specs(run.workload, led)[jid].records()[0] == (0, 2)  # max_attempts = 2
    _lease(led, jid, "gone:last")
    run.reclaimer.expired()
    assert led.queued() == [] and led.failed_ids() == [0, 1, 2, 3]
    st = record_status(world.r, run.workload, 0)
    assert (st.state, st.attempts, st.reruns) == ("failed", 2, FREE_LOST_RERUNS + 2)


def test_a_chunk_committed_first_is_not_reclaimed(world, proc):
    run, led, jid = _one_chunk(world, "committed")
    world.work(proc)
    run.reclaimer.reclaim(jid, "too late")
    assert led.queued() == [] and led.failed_ids() == []
    assert [record_status(world.r, run.workload, i).state for i in range(4)] == ["done"] * 4


def test_a_job_lost_from_redis_is_queued_again(world):
    run, led, jid = _one_chunk(world, "lost-job")
    world.r.delete(f"rq:job:{jid}")
    world.r.lrem(f"rq:queue:{world.settings.rq_queue}", 0, jid)
    run.reclaimer.lost()
    [again] = led.queued()
    assert again.endswith("-1") and [j.id for j in world.queued_jobs()] == [again]


def test_a_job_in_no_queue_counts_as_lost_only_when_seen_twice(world, caplog):
    run, led, jid = _one_chunk(world, "unqueued")
    world.r.lrem(f"rq:queue:{world.settings.rq_queue}", 0, jid)  # RQ still says "queued"
    run.reclaimer.lost()
    assert led.queued() == [jid]  # maybe between RQ's dequeue and its status update
    with caplog.at_level(logging.WARNING, logger="rqp.scheduler"):
        run.reclaimer.lost()
    [again] = led.queued()
    assert again.endswith("-1") and LOST_FROM_QUEUE in caplog.text


def test_a_chunk_handed_back_is_queued_again_with_no_attempt_spent(world):
    run, led, jid = _one_chunk(world, "handed-back")
    assert led.release(jid, "blind:1", "cannot open the workload", time.time())
    run.reclaimer.lost()
    [again] = led.queued()
    assert again.endswith("-1")
    assert specs(run.workload, led)[again].records() == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert not led.released(jid)
