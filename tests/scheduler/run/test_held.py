"""``Held``: pausing parks the queued chunks (off the RQ queue, still pending with their specs),
resuming puts each back once, cancelling drops them and the retries not yet due."""

from __future__ import annotations

from rq import Queue

from rqp.ledger import Ledger

from .conftest import spec_records


def _queued(world, name: str):
    run = world.run(world.pack(name, [{"n": i} for i in range(20)]))
    run.enqueuer.fill_window()
    led = Ledger(world.r, run.id)
    assert len(led.queued()) == 3
    return run, led


def test_park_takes_the_queued_chunks_off_the_queue_and_unpark_puts_each_back_once(world):
    run, led = _queued(world, "park")
    pending = sorted(led.queued())
    run.held.park()
    run.held.park()  # again, as every held step does
    assert run.held.parked and world.queued_jobs() == []
    assert sorted(led.queued()) == pending and spec_records(run.workload, led) == list(range(12))
    q = Queue(world.settings.rq_queue, connection=world.r)
    q.push_job_id(pending[0])  # one is back already (a resume raced a pause)
    run.held.unpark()
    assert not run.held.parked
    assert sorted(q.get_job_ids()) == pending  # each once


def test_drop_removes_the_parked_chunks_and_the_retries(world):
    run, led = _queued(world, "drop")
    pending = led.queued()
    world.r.zadd(led.k.retry, {"1:2": 1e12})  # a retry not yet due
    run.held.park()
    run.held.drop()
    assert led.queued() == [] and led.in_flight() == 0
    assert not any(world.r.exists(f"rq:job:{jid}") for jid in pending)
    assert not world.r.exists(led.k.chunk("c00000000"))
    assert world.r.zcard(led.k.retry) == 0
