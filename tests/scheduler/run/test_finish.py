"""``Finisher``: finishing consolidates the results into the sealed summary, closes the head,
announces "done" and frees the lock; failing seals the detail and says only a generic line in clear."""

from __future__ import annotations

import base64
from dataclasses import replace

from rqp.ledger import Head, Ledger, Meta, State
from rqp.messages import open_envelope
from rqp.summary import read_summary

from .conftest import FAILS_ON_FIVE


def _events(world, run) -> list[dict]:
    q = world.settings.events_queue
    return [open_envelope(m.body, lambda _w: run.workload, q).payload for m in world.mq().peek(q, 100)]


def test_finish_writes_the_summary_and_announces_it(world, proc):
    world.settings = replace(world.settings, window_chunks=100, max_attempts=1)
    run = world.run(world.pack("finish", [{"n": i} for i in range(10)], script=FAILS_ON_FIVE))
    run.enqueuer.fill_window()
    world.work(proc)
    led = Ledger(world.r, run.id)
    assert led.idle()
    run.finisher.finish()
    s = read_summary(world.store, run.workload)
    assert (s.total, s.done, s.failed) == (10, 9, 1) and s.failures[0].id == 5
    assert led.state() == State.DONE
    assert Head.open(run.workload, led.head()).closed and run.ctx.head.closed
    done = [e for e in _events(world, run) if e["event"] == "done"]
    assert [(e["total"], e["done"], e["failed"]) for e in done] == [(10, 9, 1)]
    led.take_lock("another:1", 30)  # freed: another scheduler may take it


def test_fail_seals_the_detail_and_says_a_generic_line_in_clear(world):
    run = world.run(world.pack("failing", [{"n": 1}]))
    led = Ledger(world.r, run.id)
    run.finisher.fail("line 3 of the data: 'secret'", generic="the workload's data is unreadable")
    assert led.state() == State.FAILED
    meta = led.meta()
    assert "secret" not in repr(meta) and "the workload's data is unreadable" in meta.get(Meta.ERROR, "")
    sealed = base64.b64decode(led.sealed_error() or b"")
    assert run.workload.open_sealed("error", "", sealed) == b"line 3 of the data: 'secret'"
    assert [e["error"] for e in _events(world, run) if e["event"] == "failed"] == ["line 3 of the data: 'secret'"]
    led.take_lock("another:1", 30)
