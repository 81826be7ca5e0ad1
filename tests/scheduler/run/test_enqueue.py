"""``Enqueuer``: the window is filled from the record stream, several chunks per transaction,
without skipping or duplicating a record -- across transactions, restarts and lost writes."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from rqp.ledger import Head, Ledger, Meta
from rqp_scheduler.run import enqueue

from .conftest import spec_records

N = 37  # not a multiple of the chunk size (4): the last chunk is short


@pytest.fixture
def small_transactions(monkeypatch):
    """Two chunks of 4 per transaction, so a workload takes many."""
    monkeypatch.setattr(enqueue, "ENQUEUE_BATCH_RECORDS", 8)


def test_every_record_is_queued_once_across_many_transactions(world, small_transactions):
    world.settings = replace(world.settings, window_chunks=100)
    wid = world.pack("many-tx", [{"n": i} for i in range(N)])
    run = world.run(wid)
    run.enqueuer.fill_window()
    led = Ledger(world.r, wid)
    head = Head.open(run.workload, led.head())
    assert (head.enqueued, head.chunks, head.total) == (N, 10, N)
    assert run.ctx.head == head and run.exhausted
    assert spec_records(run.workload, led) == list(range(N))
    assert led.in_flight() == 10 and len(world.queued_jobs()) == 10


def test_the_window_bounds_what_is_queued(world, small_transactions):
    wid = world.pack("window", [{"n": i} for i in range(N)])
    run = world.run(wid)
    run.enqueuer.fill_window()
    run.enqueuer.fill_window()  # the window (3 chunks) is full: nothing more
    led = Ledger(world.r, wid)
    assert led.in_flight() == 3 and not run.exhausted
    assert spec_records(run.workload, led) == list(range(12))


def test_a_restarted_scheduler_goes_on_from_the_cursor(world, small_transactions):
    wid = world.pack("restart", [{"n": i} for i in range(N)])
    first = world.run(wid)
    first.enqueuer.fill_window()  # 3 chunks: records 0-11
    first.lock.release()  # the scheduler is gone
    world.settings = replace(world.settings, window_chunks=100)
    second = world.run(wid)
    assert second.ctx.head.enqueued == 12
    second.enqueuer.fill_window()
    led = Ledger(world.r, wid)
    assert spec_records(second.workload, led) == list(range(N))  # none skipped, none twice
    assert Head.open(second.workload, led.head()).total == N


def test_a_head_redis_lost_is_read_again_and_chunks_it_has_are_not_queued_twice(world, caplog):
    wid = world.pack("lost-head", [{"n": i} for i in range(N)])
    run = world.run(wid)
    led = Ledger(world.r, wid)
    run.enqueuer.fill_window()  # records 0-11
    earlier = led.head()
    run.ctx.settings = replace(run.ctx.settings, window_chunks=6)
    run.enqueuer.fill_window()  # records 12-23
    world.r.hset(led.k.meta, Meta.HEAD, earlier)  # a Redis restart lost the last head written
    with caplog.at_level(logging.WARNING, logger="rqp.scheduler"):
        assert not run.enqueuer.cursor_matches()
        assert run.ctx.head.enqueued == 12
        run.ctx.settings = replace(run.ctx.settings, window_chunks=9)
        run.enqueuer.fill_window()  # chunks 3-5 are in Redis: passed over, the head moves on
    assert spec_records(run.workload, led) == list(range(24))  # none of them queued twice
    assert Head.open(run.workload, led.head()).enqueued == 24
    assert "Redis holds the enqueue at 12 records, this scheduler queued 24" in caplog.text
    assert "chunk 3 is in Redis already; not queued again" in caplog.text
    run.enqueuer.fill_window()  # the next chunks, 6-8
    assert spec_records(run.workload, led) == list(range(36))
    assert Head.open(run.workload, led.head()).enqueued == 36


def test_a_record_without_its_id_fails_and_is_not_queued(world, tmp_path):
    from rqp.status import record_status
    from rqp.workload import pack

    data = tmp_path / "keyed.jsonl"
    data.write_text('{"id": "a", "n": 1}\n{"n": 2}\n{"id": 3, "n": 3}\n')
    script = tmp_path / "keyed.py"
    script.write_text("def process(r):\n    return r['n']\n")
    pack(world.store, world.keys, "keyed", data, script, signer=world.signer.key, id_field="id")
    run = world.run("keyed")
    run.enqueuer.fill_window()
    led = Ledger(world.r, "keyed")
    assert spec_records(run.workload, led) == [0, 2]
    st = record_status(world.r, run.workload, 1)
    assert st.state == "failed" and "record 1 has no id in field 'id'" in (st.error or "")
    assert led.failed_ids() == [1]
