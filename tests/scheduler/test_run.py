"""``WorkloadRun`` in process: enqueue into the window, reclaim, retries, finish -- with the
processor's ``ChunkProcessor`` running the chunks in process too (a real script host)."""

from __future__ import annotations

import base64
import time

import pytest

from rqp.errors import ScriptError
from rqp.jobs import RqpJob, open_spec
from rqp.ledger import Head, Ledger, State
from rqp.signing import TrustStore
from rqp.status import record_status
from rqp.summary import read_summary
from rqp_processor.chunk import ChunkProcessor
from rqp_scheduler.run import WorkloadRun
from rqp_scheduler.run.reclaim import FREE_LOST_RERUNS


def _run(world, wid: str) -> WorkloadRun:
    return world.run(wid)


def _processor(world) -> ChunkProcessor:
    return world.processor()


def _queued_jobs(world) -> list[RqpJob]:
    return world.queued_jobs()


def _work(world, proc: ChunkProcessor) -> int:
    return world.work(proc)


def _lease(led: Ledger, jid: str, worker: str) -> None:
    """A worker takes the lease of ``jid``'s four records and dies (its lease has run out)."""
    sealed = led.spec(jid)
    assert led.start(
        jid, "c00000000", deadline=time.time() - 1, runs=((0, 4, 1),), sealed_spec=sealed, start_note=b"", worker=worker
    )


def test_enqueue_fills_the_window_and_no_more(world):
    wid = world.pack("win", [{"n": i} for i in range(30)])
    run = _run(world, wid)
    run.step()
    led = Ledger(world.r, wid)
    assert led.in_flight() == 3  # window_chunks
    head = Head.open(run.workload, led.head())
    assert (head.enqueued, head.chunks, head.total) == (12, 3, None)  # 3 chunks of 4 records
    assert len(_queued_jobs(world)) == 3
    assert record_status(world.r, run.workload, 0).state == "queued"
    with pytest.raises(Exception, match="not queued yet"):
        record_status(world.r, run.workload, 20)


def test_a_workload_runs_to_its_summary_in_process(world):
    wid = world.pack("inproc", [{"n": i} for i in range(10)] + ["not an object"])
    run, proc = _run(world, wid), _processor(world)
    try:
        for _ in range(50):
            if run.step():
                break
            _work(world, proc)
        else:
            raise AssertionError("the workload did not finish")
    finally:
        proc.pool.close()
    summary = read_summary(world.store, run.workload)
    assert (summary.total, summary.done, summary.failed) == (11, 10, 1)
    assert "TypeError" in (summary.failures[0].error or "")  # 'str' indices: the script's own error, after 2 attempts
    assert summary.failures[0].attempts == 2
    assert Ledger(world.r, wid).state() == State.DONE


def test_a_dead_workers_chunk_is_reclaimed_and_its_records_fail_after_the_last_attempt(world):
    wid = world.pack("dead", [{"n": i} for i in range(4)])
    run = _run(world, wid)
    run.step()
    led = Ledger(world.r, wid)
    [jid] = led.queued()
    # a worker took the lease and died: the lease runs out. A lost worker is no attempt of its
    # records (issue #24 item 26) until FREE_LOST_RERUNS of them; then each spends one
    _lease(led, jid, "gone:1")
    run.reclaimer.expired()
    [again] = led.queued()
    assert again.endswith("-1")  # the next generation of the same chunk
    spec = open_spec(run.workload, again, led.spec(again))
    assert [att for _rid, att in spec.records()] == [1, 1, 1, 1] and spec.reruns == 1
    for i in range(FREE_LOST_RERUNS):
        _lease(led, again, f"gone:{i + 2}")
        run.reclaimer.expired()
        [again] = led.queued()
    spec = open_spec(run.workload, again, led.spec(again))
    assert [att for _rid, att in spec.records()] == [2, 2, 2, 2]
    _lease(led, again, "gone:last")
    run.reclaimer.expired()  # max_attempts = 2: failed, with the reason
    assert led.failed_ids() == [0, 1, 2, 3] and led.queued() == []
    assert sorted(world.r.hkeys(led.k.rec)) == [b"0", b"1", b"2", b"3"]  # kept for 'rqp retry'
    assert not world.r.exists(led.k.chunk("c00000000"))
    st = record_status(world.r, run.workload, 2)
    assert st.state == "failed" and st.attempts == 2 and "re-run 2 times: its worker stopped renewing" in st.error


def test_a_script_that_does_not_load_fails_the_workload_at_start(world):
    wid = world.pack("broken", [{"n": 1}], script="import nosuchmodule\n\ndef process(r):\n    return r\n")
    with pytest.raises(ScriptError, match=r"failed to import .*ModuleNotFoundError"):
        _run(world, wid)
    led = Ledger(world.r, wid)
    assert led.state() == State.FAILED
    assert b"nosuchmodule" in run_error(world, wid)


def run_error(world, wid: str) -> bytes:
    from rqp.workload import Workload

    w = Workload.open(world.store, world.keys, wid, TrustStore.from_file(world.signer.trusted))
    return w.open_sealed("error", "", base64.b64decode(Ledger(world.r, wid).sealed_error()))


#: runs ``rqp-scheduler run W`` with its loop replaced by a probe that prints how many objects the
#: cyclic collector no longer looks at (``gc.get_freeze_count``) when the run would begin
_FREEZE_PROBE = """
import gc, sys
from rqp_scheduler import cli
cli._run = lambda *a, **k: print("frozen", gc.get_freeze_count()) or 0
sys.exit(cli.main(["run", sys.argv[1]]))
"""


def test_the_scheduler_freezes_what_its_set_up_made_out_of_the_collectors_reach(world, cli_env):
    """``rqp-scheduler``'s start-up objects (modules, clients, keys) are moved out of the cyclic
    collector's reach once it is set up (``gc.freeze``), so its exit no longer walks them all: in
    a process of its own (the scheduler hardens the process it runs in)."""
    import subprocess
    import sys

    wid = world.pack("frozen", [{"n": i} for i in range(3)])
    cp = subprocess.run([sys.executable, "-c", _FREEZE_PROBE, wid], capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    frozen = int(cp.stdout.split("frozen", 1)[1].split()[0])
    assert frozen > 10_000, cp.stdout  # every module's objects, not a handful
