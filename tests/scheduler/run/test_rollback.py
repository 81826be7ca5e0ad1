"""``RollbackWatch``: the scheduler's sealed beat tells it Redis went back in time, and the
reclaimer then takes back at once every chunk leased before the writes Redis lost, instead of
waiting for their leases; a lease written since is a live worker's and is left alone."""

from __future__ import annotations

import time

from rqp.ledger import Ledger, Meta
from rqp_scheduler.run.reclaim import Reclaimer
from rqp_scheduler.run.rollback import open_beat

from .conftest import specs


def _lease(led: Ledger, jid: str, chunk: str, first: int, deadline: float) -> None:
    assert led.start(
        jid, chunk, deadline=deadline, runs=((first, 4, 1),), sealed_spec=led.spec(jid), start_note=b"",
        worker="w:1",
    )  # fmt: skip


def _two_chunks(world, name: str):
    run = world.run(world.pack(name, [{"n": i} for i in range(8)]))
    run.enqueuer.fill_window()
    led = Ledger(world.r, run.id)
    first, second = sorted(led.queued())
    return run, led, first, second


def test_an_earlier_beat_put_back_reclaims_the_chunks_leased_before_it_at_once(world):
    run, led, stale, live = _two_chunks(world, "rolled")
    lease = world.settings.lease_seconds
    run.reclaimer.expired()  # adopts (and writes) the beat
    _lease(led, stale, "c00000000", 0, time.time() + lease)  # started; its commit will be lost
    before = world.r.hget(led.k.meta, Meta.BEAT)  # the snapshot
    run.reclaimer.expired()
    run.reclaimer.expired()
    assert led.expired(time.time()) == [] and led.lease(stale) is not None  # a live lease is left alone
    assert open_beat(run.workload, world.r.hget(led.k.meta, Meta.BEAT)) == 2
    world.r.hset(led.k.meta, Meta.BEAT, before)  # what a restart from the snapshot leaves
    # a worker started the other chunk since Redis came back, and renewed it
    _lease(led, live, "c00000001", 4, time.time() + 600)
    run.reclaimer.expired()
    assert run.reclaimer.rollback.noticed == 1
    assert run.reclaimer.looking  # lost RQ jobs are looked for every pass for a while
    again = [j for j in led.queued() if j.startswith(stale[:-1])]
    assert again == [stale[:-1] + "1"] and led.lease(stale) is None  # not waited for: re-run now
    spec = specs(run.workload, led)[again[0]]
    assert spec.records() == [(0, 1), (1, 1), (2, 1), (3, 1)] and spec.reruns == 1  # no attempt spent
    assert led.lease(live) is not None and led.lease(live) > time.time() + 500  # the live one is left
    run.reclaimer.expired()  # the beat is this scheduler's again: nothing more
    assert run.reclaimer.rollback.noticed == 1


def test_a_deleted_or_foreign_beat_reads_as_a_rollback_and_only_reruns_the_chunks(world, proc):
    """A Redis writer's junk, another workload's beat or a delete re-runs what is in flight (work
    wasted for this workload), and the workload still ends with every record once."""
    run, led, stale, _ = _two_chunks(world, "junk")
    other = world.run(world.pack("bystander", [{"n": 1}]))
    other.reclaimer.expired()
    run.reclaimer.expired()
    _lease(led, stale, "c00000000", 0, time.time() + 600)
    world.r.hset(led.k.meta, Meta.BEAT, world.r.hget(f"rqp:w:{other.id}:meta", Meta.BEAT))
    run.reclaimer.expired()
    assert led.lease(stale) is None  # a beat Redis never held from this scheduler: every lease taken back
    world.r.hset(led.k.meta, Meta.BEAT, b"not base64 at all")
    run.reclaimer.expired()
    world.r.hdel(led.k.meta, Meta.BEAT)
    run.reclaimer.expired()
    assert run.reclaimer.rollback.noticed == 3
    world.run_to_end(run, proc)
    assert led.state() == "done" and int(world.r.bitcount(led.k.done)) == 8


def test_a_scheduler_that_takes_a_workload_over_adopts_its_beat(world):
    run, led, jid, _ = _two_chunks(world, "takeover")
    _lease(led, jid, "c00000000", 0, time.time() + 600)
    for _ in range(3):
        run.reclaimer.expired()
    successor = Reclaimer(run.ctx)  # no memory of the beat: it starts from Redis's
    successor.expired()
    successor.expired()
    assert successor.rollback.noticed == 0 and led.lease(jid) is not None
    assert open_beat(run.workload, world.r.hget(led.k.meta, Meta.BEAT)) == 3


def test_a_job_marked_started_whose_lease_was_lost_is_rerun_two_passes_after_a_rollback(world):
    """Dequeued (RQ marked it started) just before the snapshot, leased just after: Redis holds a
    started job that nobody leases. Without a rollback it is given its lease's time (a worker may
    be about to take it); after one it is re-run once seen so twice, a pass apart."""
    from datetime import UTC, datetime

    from rq.job import JobStatus

    from rqp.jobs import JSONSerializer, RqpJob

    run, led, jid, _ = _two_chunks(world, "popped")
    job = RqpJob.fetch(jid, connection=world.r, serializer=JSONSerializer)
    job.started_at = datetime.now(UTC)
    job.save()
    job.set_status(JobStatus.STARTED)
    for q in run.ctx.queues.values():
        q.remove(jid)
    run.reclaimer.expired()
    run.reclaimer.lost()
    run.reclaimer.lost()
    assert jid in led.queued()  # no rollback: left to its lease
    before = world.r.hget(led.k.meta, Meta.BEAT)
    run.reclaimer.expired()
    world.r.hset(led.k.meta, Meta.BEAT, before)
    run.reclaimer.expired()  # the rollback is noticed
    assert run.reclaimer.looking
    run.reclaimer.lost()
    assert jid in led.queued()  # seen once
    run.reclaimer.lost()
    assert jid not in led.queued() and jid[:-1] + "1" in led.queued()  # seen twice: re-run
