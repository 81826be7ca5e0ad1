"""The first window (issue 28, start-up): with adaptive chunk sizes the scheduler queues only
``FIRST_WINDOW_PER_WORKER`` chunks per worker at ``RQP_CHUNK_SIZE`` before any chunk has been
measured, and sizes the rest from the first commit -- a whole window of blind 256-record chunks
was a fifth of a 1 ms workload, each chunk paying its fixed cost. Real Redis, real chunks."""

from __future__ import annotations

from dataclasses import replace

from rqp.ledger import Ledger
from rqp_scheduler.run import enqueue
from rqp_scheduler.run.enqueue import FIRST_WINDOW_PER_WORKER, MIN_WINDOW

from .conftest import specs

N = 400


def test_the_first_chunks_are_few_until_one_is_measured_then_the_window_is_sized_from_it(world, proc):
    world.settings = replace(world.settings, window_chunks=0, adaptive_chunks=True, chunk_size=4)
    wid = world.pack("first-window", [{"n": i} for i in range(N)])
    run = world.run(wid)
    led = Ledger(world.r, wid)
    e = run.enqueuer

    e.fill_window()
    # no worker has registered with RQ here: the window is as for one worker
    assert led.in_flight() == FIRST_WINDOW_PER_WORKER
    assert e.first_window and not e.window_full  # the loop looks again within WAIT_ENQUEUING
    e.fill_window()
    assert led.in_flight() == FIRST_WINDOW_PER_WORKER  # still nothing measured: nothing more
    first = specs(run.workload, led)
    assert [len(s.records()) for s in first.values()] == [4] * FIRST_WINDOW_PER_WORKER

    assert world.work(proc) == FIRST_WINDOW_PER_WORKER  # they commit: the records' time is known
    e.fill_window()
    assert not e.first_window and e.per_record > 0
    queued = sorted(
        (s for jid, s in specs(run.workload, led).items() if jid not in first), key=lambda s: s.records()[0][0]
    )
    sizes = [len(s.records()) for s in queued]
    # the rest of the window is queued at once, at the measured size (capped at a quarter of
    # the workload per worker), not at RQP_CHUNK_SIZE
    assert len(queued) == led.in_flight() and (len(queued) == MIN_WINDOW or run.exhausted)
    assert sizes[0] == e.chunk_size > 4, sizes


def test_a_fixed_window_or_fixed_chunks_are_queued_whole_as_before(world):
    world.settings = replace(world.settings, window_chunks=5, adaptive_chunks=True)
    wid = world.pack("fixed-window", [{"n": i} for i in range(N)])
    run = world.run(wid)
    run.enqueuer.fill_window()
    assert Ledger(world.r, wid).in_flight() == 5 and not run.enqueuer.first_window

    world.settings = replace(world.settings, window_chunks=0, adaptive_chunks=False)
    wid = world.pack("fixed-chunks", [{"n": i} for i in range(N)])
    run = world.run(wid)
    run.enqueuer.fill_window()
    assert Ledger(world.r, wid).in_flight() == MIN_WINDOW and not run.enqueuer.first_window


def test_a_first_window_held_past_its_eager_period_waits_as_a_full_one(world, monkeypatch):
    """A slow script's first chunk (256 records of a second each) is not watched 50 times a
    second: past ``FIRST_WINDOW_EAGER_SECONDS`` the held window counts as full for the loop."""
    world.settings = replace(world.settings, window_chunks=0, adaptive_chunks=True, chunk_size=4)
    wid = world.pack("slow-first", [{"n": i} for i in range(N)])
    run = world.run(wid)
    e = run.enqueuer
    e.fill_window()
    assert e.first_window and not e.window_full
    monkeypatch.setattr(enqueue, "FIRST_WINDOW_EAGER_SECONDS", 0.0)
    e.fill_window()
    assert e.first_window and e.window_full
    assert Ledger(world.r, wid).in_flight() == FIRST_WINDOW_PER_WORKER
