"""``RollbackWatch``: the scheduler's sealed beat tells it Redis went back in time, and the
reclaimer then takes back every leased chunk at once instead of waiting for their leases."""

from __future__ import annotations

import time

from rqp.ledger import Ledger, Meta
from rqp_scheduler.run.reclaim import Reclaimer
from rqp_scheduler.run.rollback import open_beat

from .conftest import specs


def _leased(world, name: str):
    """A workload of one chunk, leased by a worker for a long while (its lease is far off)."""
    run = world.run(world.pack(name, [{"n": i} for i in range(4)]))
    run.enqueuer.fill_window()
    led = Ledger(world.r, run.id)
    [jid] = led.queued()
    assert led.start(
        jid, "c00000000", deadline=time.time() + 600, runs=((0, 4, 1),), sealed_spec=led.spec(jid),
        start_note=b"", worker="w:1",
    )  # fmt: skip
    return run, led, jid


def test_an_earlier_beat_put_back_reclaims_every_leased_chunk_at_once(world):
    run, led, jid = _leased(world, "rolled")
    run.reclaimer.expired()  # adopts (and writes) the beat
    before = world.r.hget(led.k.meta, Meta.BEAT)
    run.reclaimer.expired()
    run.reclaimer.expired()
    assert led.expired(time.time()) == [] and led.lease(jid) is not None  # a live lease is left alone
    assert open_beat(run.workload, world.r.hget(led.k.meta, Meta.BEAT)) == 2
    world.r.hset(led.k.meta, Meta.BEAT, before)  # what a restart from an older snapshot leaves
    run.reclaimer.expired()
    assert run.reclaimer.rollback.noticed == 1
    assert run.reclaimer.looking  # lost RQ jobs are looked for every pass for a while
    [again] = led.queued()
    assert again == jid[:-1] + "1" and led.lease(jid) is None
    spec = specs(run.workload, led)[again]
    assert spec.records() == [(0, 1), (1, 1), (2, 1), (3, 1)] and spec.reruns == 1  # no attempt spent
    run.reclaimer.expired()  # the beat is this scheduler's again: nothing more
    assert run.reclaimer.rollback.noticed == 1 and led.queued() == [again]


def test_a_deleted_or_foreign_beat_reads_as_a_rollback_and_only_reruns_the_chunks(world, proc):
    """A Redis writer's junk, another workload's beat or a delete re-runs what is in flight (work
    wasted for this workload), and the workload still ends with every record once."""
    run, led, _ = _leased(world, "junk")
    other = world.run(world.pack("bystander", [{"n": 1}]))
    other.reclaimer.expired()
    run.reclaimer.expired()
    world.r.hset(led.k.meta, Meta.BEAT, world.r.hget(f"rqp:w:{other.id}:meta", Meta.BEAT))
    run.reclaimer.expired()
    world.r.hset(led.k.meta, Meta.BEAT, b"not base64 at all")
    run.reclaimer.expired()
    world.r.hdel(led.k.meta, Meta.BEAT)
    run.reclaimer.expired()
    assert run.reclaimer.rollback.noticed == 3
    world.run_to_end(run, proc)
    assert led.state() == "done" and int(world.r.bitcount(led.k.done)) == 4


def test_a_scheduler_that_takes_a_workload_over_adopts_its_beat(world):
    run, led, jid = _leased(world, "takeover")
    for _ in range(3):
        run.reclaimer.expired()
    successor = Reclaimer(run.ctx)  # no memory of the beat: it starts from Redis's
    successor.expired()
    successor.expired()
    assert successor.rollback.noticed == 0 and led.lease(jid) is not None
    assert open_beat(run.workload, world.r.hget(led.k.meta, Meta.BEAT)) == 3
