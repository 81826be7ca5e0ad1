"""An rqp job's RQ executions are read in two round trips, with RQ's own result (issue 28).

RQ reads a job's execution registry as: drop the expired ids, read the ids, then one hash per
execution, each its own round trip, and does it twice as it deletes a finished job. These tests
compare rqp's pipelined read with RQ's own on a real Redis, and count the requests Redis read.
"""

from __future__ import annotations

import pytest
import redis
from rq.executions import Execution, ExecutionRegistry

from rqp.jobs import ENTRY_POINT, JSONSerializer, PipelinedExecutions, RqpJob


def _job(r: redis.Redis) -> RqpJob:
    job = RqpJob.create(ENTRY_POINT, args=["w", "spec"], connection=r, serializer=JSONSerializer, id="rqp-w-c1-0")
    job.save()
    return job


def _executions(r: redis.Redis, job: RqpJob, n: int, ttl: int = 600) -> list[Execution]:
    out = []
    with r.pipeline() as pipe:
        for i in range(n):
            out.append(Execution.create(job, ttl, pipe, worker_name=f"worker-{i}"))
        pipe.execute()
    return out


def _reads(r: redis.Redis) -> int:
    return int(r.info("stats")["total_reads_processed"])


def _seen(executions: list[Execution]) -> list[tuple[str, str, str, float]]:
    return sorted((e.id, e.job_id, e.worker_name, e.created_at.timestamp()) for e in executions)


def test_the_job_reads_its_executions_as_rq_does_in_two_round_trips(r: redis.Redis) -> None:
    job = _job(r)
    made = _executions(r, job, 3)
    assert isinstance(job.execution_registry, PipelinedExecutions)
    rq_own = ExecutionRegistry(job.id, connection=r).get_executions()
    before = _reads(r)
    ours = job.get_executions()
    after = _reads(r)
    assert after - before == 3  # two reads, and the second INFO (RQ's: 1 + 1 + 3 = 5)
    assert _seen(ours) == _seen(rq_own)
    assert sorted(e.id for e in ours) == sorted(e.id for e in made)


def test_expired_executions_are_dropped_and_none_is_an_empty_list(r: redis.Redis) -> None:
    job = _job(r)
    assert job.get_executions() == []
    (gone,) = _executions(r, job, 1, ttl=-120)  # its score (now + ttl + 60) is already past
    (kept,) = _executions(r, job, 1)
    assert [e.id for e in job.get_executions()] == [kept.id]
    assert r.zscore(job.execution_registry.key, gone.id) is None


def test_an_execution_whose_hash_is_gone_raises_as_rq_does(r: redis.Redis) -> None:
    job = _job(r)
    (execution,) = _executions(r, job, 1)
    r.delete(execution.key)
    with pytest.raises(ValueError, match="not found in Redis"):
        ExecutionRegistry(job.id, connection=r).get_executions()
    with pytest.raises(ValueError, match="not found in Redis"):
        job.get_executions()


def test_a_finished_job_is_deleted_with_its_executions(r: redis.Redis) -> None:
    job = _job(r)
    (execution,) = _executions(r, job, 1)
    with r.pipeline() as pipe:
        job.delete(pipeline=pipe, remove_from_queue=False)
        pipe.execute()
    assert not r.exists(job.key, execution.key, job.execution_registry.key)
    assert r.zcard(job.started_job_registry.key) == 0


def test_deleting_a_job_reads_its_executions_once(r: redis.Redis) -> None:
    """RQ reads them for the started registry, then again to delete them: once here."""
    job = _job(r)
    made = _executions(r, job, 2)
    with r.pipeline() as pipe:
        before = _reads(r)
        job.delete(pipeline=pipe, remove_from_queue=False)
        after = _reads(r)
        pipe.execute()
    assert after - before == 4  # the job's status, the executions (two), and the second INFO
    for execution in made:
        assert not r.exists(execution.key)
        assert r.zscore(job.started_job_registry.key, execution.composite_key) is None
    assert not r.exists(job.key, job.execution_registry.key)
    assert job._executions_read is None and not job._deleting  # nothing kept past the delete
    assert len(job.get_executions()) == 0
