"""What a worker makes Redis do per chunk job (issue 28: RQ's per-job cost), counted from Redis's
own tally while a real ``RqpWorker`` -- the one ``rqp-processor`` runs -- works queued chunks in
burst mode: rqp's worker sends RQ's start as one transaction, reads what RQ's delete reads at
once, and sends the success writes, "idle", the beat and the next pass's reads (the `rq suspend`
flag, the queues' lengths) in one transaction. The end state in
Redis is RQ's own: the same keys, counters and state as RQ's path leaves (which ``rq info`` and
``rqp status`` read)."""

from __future__ import annotations

import dataclasses
from typing import Any

import redis
from rq import SimpleWorker
from rq.worker import BaseWorker
from world import world  # noqa: F401 - a fixture

from rqp.ledger import WorkloadKeys
from rqp_processor.worker import RqpWorker, build_worker

#: RQ's own per-job hooks, which rqp's worker replaces
_RQ_PATH = {
    "execute_job": SimpleWorker.execute_job,
    "prepare_job_execution": BaseWorker.prepare_job_execution,
    "handle_execution_ended": BaseWorker.handle_execution_ended,
    "handle_job_success": BaseWorker.handle_job_success,
    "check_for_suspension": BaseWorker.check_for_suspension,
}


def _requests(r: redis.Redis) -> int:
    return int(r.info("stats")["total_reads_processed"])


def _state(r: redis.Redis, worker: str) -> dict[str, Any]:
    """RQ's state after the burst: its keys (by kind) and the worker's counters and state."""
    keys = sorted(k.decode().replace(worker, "W") for k in r.scan_iter("rq:*"))
    keys = [k for k in keys if not k.startswith("rq:worker:w-")]  # an earlier burst's worker
    fields = r.hmget(f"rq:worker:{worker}", "state", "successful_job_count", "failed_job_count")
    return {"keys": keys, "worker": fields}


def _burst(world: Any, wid: str, chunks: int) -> tuple[int, dict[str, Any]]:  # noqa: F811
    """Requests Redis read while a worker worked ``chunks`` queued chunk jobs, and RQ's state."""
    world.settings = dataclasses.replace(world.settings, window_chunks=chunks)
    world.pack(wid, [{"n": i} for i in range(4 * chunks)])
    world.run(wid).step()
    assert len(world.queued_jobs()) == chunks
    w = build_worker(world.settings, name=f"w-{wid}")
    before = _requests(world.r)
    try:
        w.work(burst=True, with_scheduler=False)
    finally:
        w.processor.pool.close()
    spent = _requests(world.r) - before
    assert not world.queued_jobs()
    return spent, _state(world.r, w.name)


def _per_job(world: Any, tag: str) -> tuple[float, dict[str, Any]]:  # noqa: F811
    few, _ = _burst(world, f"{tag}-few", 2)
    many, state = _burst(world, f"{tag}-many", 10)
    return (many - few) / 8, state


def test_a_chunk_job_costs_fewer_round_trips_and_leaves_rq_s_own_state(world, monkeypatch):  # noqa: F811
    rqp, rqp_state = _per_job(world, "rqp")
    with monkeypatch.context() as m:
        for name, fn in _RQ_PATH.items():
            m.setattr(RqpWorker, name, fn)
        rq, rq_state = _per_job(world, "rq")
    # RQ's path: ~20 requests per job (its start in two transactions, the job's beat, the WATCH,
    # dependents and status reads, executions in two, the success transaction, "idle", a beat,
    # the suspension check, the queues' lengths); rqp's: ~10 (measured 10.1 against 20.75)
    assert rq - rqp >= 8, f"rqp's worker {rqp:.1f} requests per chunk job, RQ's path {rq:.1f}"
    assert rqp_state == rq_state  # the same keys left, the same counters and state
    assert rqp_state["worker"] == [b"idle", b"10", None]
    assert not [k for k in rqp_state["keys"] if k.startswith(("rq:job:", "rq:execution"))]


def test_a_job_that_keeps_its_result_takes_rq_s_path(world, monkeypatch):  # noqa: F811
    """Only the rqp job that keeps no result (all of them: the scheduler queues them with
    ``result_ttl=0``) is shortened; anything else runs RQ's own success path."""
    from rqp.jobs import RqpJob

    monkeypatch.setattr(RqpJob, "get_result_ttl", lambda self, default: 60)
    calls: list[str] = []
    real = BaseWorker.handle_job_success

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        calls.append("rq")
        real(self, *args, **kwargs)

    monkeypatch.setattr(BaseWorker, "handle_job_success", counted)
    _, state = _burst(world, "kept", 2)
    assert calls == ["rq", "rq"]
    assert state["worker"][1] == b"2"
    assert [k for k in state["keys"] if k.startswith("rq:job:")]  # RQ kept them, as asked


def test_rq_suspend_still_stops_the_worker_after_the_job_in_hand(world, monkeypatch):  # noqa: F811
    """The success transaction reads RQ's `rq suspend` flag for the next pass: a suspension made
    while a chunk runs stops a burst worker before it takes another (RQ's own behaviour)."""
    from rq.suspension import suspend

    from rqp_processor.chunk import ChunkProcessor

    world.settings = dataclasses.replace(world.settings, window_chunks=3)
    world.pack("susp", [{"n": i} for i in range(12)])
    world.run("susp").step()
    real = ChunkProcessor.run

    def run_then_suspend(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = real(self, *args, **kwargs)
        suspend(world.r)  # `rq suspend`, while the first chunk's job is still in hand
        return out

    monkeypatch.setattr(ChunkProcessor, "run", run_then_suspend)
    w = build_worker(world.settings, name="w-susp")
    try:
        w.work(burst=True, with_scheduler=False)
    finally:
        w.processor.pool.close()
        world.r.delete("rq:suspended")
    assert len(world.queued_jobs()) == 2  # one chunk done; the worker stopped before the next
    assert world.r.hget("rq:worker:w-susp", "successful_job_count") == b"1"


def test_a_job_hash_deleted_while_it_ran_is_one_line_and_no_failed_job(world, monkeypatch, caplog):  # noqa: F811
    """A Redis writer deletes a chunk job's hash while the job runs: its chunk commits, and the
    worker removes RQ's records of the job with one line -- no traceback, and no job filed as
    failed in RQ's failed registry for a chunk that was done (the twelfth review, F3)."""
    deleted: list[str] = []
    ended = RqpWorker.handle_execution_ended

    def hash_deleted_first(self: Any, job: Any, *args: Any, **kwargs: Any) -> None:
        world.r.delete(job.key)  # the writer's DEL lands after the job's work, before RQ's success path
        deleted.append(job.id)
        ended(self, job, *args, **kwargs)

    monkeypatch.setattr(RqpWorker, "handle_execution_ended", hash_deleted_first)
    caplog.set_level("WARNING")
    _, state = _burst(world, "deleted", 2)
    assert len(deleted) == 2
    assert world.r.zcard("rq:failed:rqp") == 0  # nothing filed as failed
    assert not [k for k in state["keys"] if k.startswith(("rq:job:", "rq:execution", "rq:results"))]
    assert state["worker"] == [b"idle", b"2", None]
    lost = [r for r in caplog.records if "was deleted or changed in Redis while it ran" in r.getMessage()]
    assert len(lost) == 2 and all(r.exc_info is None for r in lost)
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info], [
        r.getMessage() for r in caplog.records
    ]
    assert world.r.bitcount(WorkloadKeys("deleted").done) == 8  # both chunks' records committed
