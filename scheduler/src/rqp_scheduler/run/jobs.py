"""A chunk's spec, sealed and queued as an RQ job: what the enqueuer, the retrier and the
reclaimer all end with, so the three queue a chunk the same way."""

from __future__ import annotations

import base64
import secrets

from redis.client import Pipeline
from rq import Queue

from rqp.jobs import ENTRY_POINT, JOB_TIMEOUT, ChunkSpec, runs_of, seal_spec
from rqp.ledger import job_id
from rqp.parts import PART_TOKEN_BYTES

from .context import RunContext

__all__ = ["FAILURE_TTL", "chunk_spec", "in_queues", "queue_specs"]

#: how long failed RQ jobs keep their reason in Redis
FAILURE_TTL = 7 * 86400


def chunk_spec(
    ctx: RunContext,
    chunk: str,
    records: list[tuple[int, int]],
    queued_at: float,
    key_of: dict[int, str] | None = None,
    runs: tuple[tuple[int, int, int], ...] | None = None,
) -> ChunkSpec:
    """A chunk's spec; ``key_of``: the records' own ids (``--id-field``), by record id; ``runs``:
    ``runs_of(records)`` when the caller knows it already (the enqueue's usual chunk: one run of
    consecutive ids, first attempt), so no (id, attempt) pair is built per record."""
    s = ctx.settings
    runs = runs_of(records) if runs is None else runs
    keys = tuple(key_of[r] for f, n, _ in runs for r in range(f, f + n)) if key_of else None
    lines = ctx.lines.within(runs[0][0], runs[-1][0] + runs[-1][1] - 1) if runs else ()
    return ChunkSpec(
        ctx.id,
        chunk,
        runs,
        s.max_attempts,
        s.retry_backoff,
        s.retry_backoff_max,
        queued_at,
        ctx.head.round,
        keys,
        lines or None,
        part=secrets.token_hex(PART_TOKEN_BYTES),
    )


def queue_specs(ctx: RunContext, pipe: Pipeline, specs: list[ChunkSpec], gen: int) -> None:
    """Queue one RQ job per spec (generation ``gen``), each carrying its spec sealed to the
    job id; the specs are also kept by job id, and the jobs are pending until leased."""
    if not specs:
        return
    sealed: dict[str, bytes] = {}
    jobs = []
    for spec in specs:
        jid = job_id(ctx.id, spec.chunk, gen)
        sealed[jid] = seal_spec(ctx.workload, jid, spec)
        jobs.append(
            Queue.prepare_data(
                ENTRY_POINT,
                args=[ctx.id, base64.b64encode(sealed[jid]).decode()],
                job_id=jid,
                timeout=JOB_TIMEOUT,
                result_ttl=0,
                failure_ttl=FAILURE_TTL,
                description=f"rqp {ctx.id} {spec.chunk} ({spec.size} records)",
            )
        )
    ctx.ledger.add_jobs(pipe, sealed)
    ctx.queues[ctx.priority].enqueue_many(jobs, pipeline=pipe)


def in_queues(ctx: RunContext) -> set[str]:
    """Job ids waiting in any of the RQ queues (a workload's priority may have changed)."""
    return {jid for q in ctx.queues.values() for jid in q.get_job_ids()}
