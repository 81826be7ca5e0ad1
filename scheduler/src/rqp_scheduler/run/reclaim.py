"""Reclaiming: a chunk whose lease ran out (dead or hung worker), whose RQ job failed, that RQ
lost, or that a processor handed back is queued again as its next generation -- or its records
fail, once they have used up their attempts."""

from __future__ import annotations

import logging
import re
import secrets
import time
from dataclasses import replace

from rq.job import Job, JobStatus
from rq.results import Result

from rqp import metrics_http as metrics
from rqp.chunk_records import open_records
from rqp.errors import ForbiddenJobError, IntegrityError
from rqp.jobs import ChunkSpec, JSONSerializer, RqpJob, open_spec, runs_of
from rqp.ledger import ChunkKind, JobId, count_preempted, outbox_add, record_rejection, take_drained
from rqp.messages import pack_messages
from rqp.outcome import may_retry
from rqp.parts import PART_TOKEN_BYTES
from rqp.status import FAILED, StatusRecord

from .context import RunContext
from .jobs import in_queues, queue_specs
from .rollback import RollbackWatch

__all__ = ["EXPIRED", "FREE_LOST_RERUNS", "LOST_FROM_QUEUE", "ROLLED_BACK", "Reclaimer"]

log = logging.getLogger("rqp.scheduler")

EXPIRED = "its worker stopped renewing the chunk lease (worker died or hung)"
LOST_FROM_QUEUE = "its RQ job was lost from the queue (Redis restart?)"
ROLLED_BACK = "Redis lost recent writes (a rollback or a failover), its commit or its worker's lease with them"
#: seconds by which a worker's clock (its lease deadlines) may run ahead of the scheduler's: a
#: lease written this little after a rollback's cut is still taken back (wasted work, at worst)
CLOCK_SKEW = 2.0
#: looks for jobs RQ lost (``lost``) made a reclaim pass apart, not the usual 5 s, after a
#: rollback: a job popped off its queue just before the snapshot but not yet marked started is in
#: no queue, and must be seen twice to count
LOOKS_AFTER_ROLLBACK = 3
#: re-runs of a chunk after a lost worker (killed, crashed, its VM or Redis gone) that spend no
#: attempt of its records: they did not fail. Past these, a chunk that keeps losing its worker is
#: taken to cause it (a record that kills or hangs its worker) and each re-run spends an attempt,
#: so such a record still fails after ``max_attempts`` instead of looping for ever.
FREE_LOST_RERUNS = 3


class Reclaimer:
    """Finds ``ctx``'s chunks that will not finish on their own and re-runs or fails them."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        #: jobs RQ said were queued but that sat in no queue at the last look
        self._unqueued: set[str] = set()
        #: the sealed beat that tells this scheduler Redis went back in time (``run.rollback``)
        self.rollback = RollbackWatch(ctx)
        #: looks for lost jobs left at the reclaim pass's pace (``LOOKS_AFTER_ROLLBACK``)
        self._looks = 0

    def expired(self) -> None:
        """Chunks whose lease ran out (or that a dead worker's supervisor ended): their worker is
        lost. After a rollback (the beat in Redis is older than this scheduler wrote) every chunk
        whose lease was written before the writes Redis lost is taken back at once: a commit lost
        with it would otherwise wait for its lease, whose worker finished long ago. One still
        running is re-run too -- its late commit finds its job gone and counts nothing, so no
        record is lost or doubled; a lease written (or renewed) since is a live worker's."""
        cut = self.rollback.check()
        if cut is not None:
            written_before = max(time.time(), cut + self.ctx.settings.lease_seconds + CLOCK_SKEW)
            for jid in self.ctx.ledger.expired(written_before):
                self.reclaim(jid, ROLLED_BACK, lost=True)
            self._looks = LOOKS_AFTER_ROLLBACK
            return
        for jid in self.ctx.ledger.expired(time.time()):
            self.reclaim(jid, EXPIRED, lost=True)

    @property
    def looking(self) -> bool:
        """A rollback was just noticed: look for lost jobs every reclaim pass (``LOOKS_AFTER_ROLLBACK``)."""
        return self._looks > 0

    def lost(self) -> None:
        """Queued chunks whose RQ job failed, vanished, started on a worker that died before
        taking the lease, or says "queued" while sitting in no queue (a Redis restart can lose
        the write that would have moved it on); the last must be seen twice to count, as must,
        just after a rollback, one marked started whose lease is not in Redis. RQ's own
        view comes through its public API (``Job.fetch_many``). Chunks a processor handed back
        are queued again."""
        ctx = self.ctx
        after_rollback, self._looks = self._looks > 0, max(0, self._looks - 1)
        queued = ctx.ledger.queued()
        if not queued:
            self._unqueued.clear()
            return
        jobs = RqpJob.fetch_many(queued, connection=ctx.r, serializer=JSONSerializer)
        statuses = [job.get_status(refresh=False) if job is not None else None for job in jobs]
        in_queue = in_queues(ctx) if JobStatus.QUEUED in statuses else set()
        horizon = time.time() - ctx.settings.lease_seconds
        unqueued = set()
        released = ctx.ledger.released_among(queued)
        for jid, job, status in zip(queued, jobs, statuses, strict=True):
            if jid in released:
                self.hand_back(jid)
                continue
            if status in (JobStatus.DEFERRED, JobStatus.SCHEDULED):
                continue
            if status == JobStatus.QUEUED:
                if jid in in_queue:
                    continue
                unqueued.add(jid)
                if jid not in self._unqueued:
                    continue  # maybe between RQ's dequeue and its status update: look again later
            if (
                status == JobStatus.STARTED
                and job is not None
                and job.started_at
                and job.started_at.timestamp() > horizon
            ):
                if not after_rollback:
                    continue
                # marked started, never leased: after a rollback, one whose lease was lost with
                # the writes after its dequeue; seen so twice (a reclaim pass apart), it counts
                unqueued.add(jid)
                if jid not in self._unqueued:
                    continue
            if status is None and ctx.ledger.lease(jid) != float("inf"):
                continue  # committed (result_ttl=0 deleted the job) or leased meanwhile
            reason = self._rq_failure_reason(job, status) if status != JobStatus.QUEUED else LOST_FROM_QUEUE
            # queued, started or gone without an error of its own: RQ or its worker lost it
            lost = status in (JobStatus.QUEUED, JobStatus.STARTED, None) and not self.ctx.ledger.processor_error()
            self.reclaim(jid, reason, lost=lost)
        self._unqueued = unqueued

    def _foreign(self, jid: str) -> bool:
        """True (and the member dropped from the workload's leases, the drop recorded in
        ``rqp:rejected``) when ``jid`` is not one of this workload's job ids: only a Redis writer
        puts such a member in ``pending``, and nothing of it can be reclaimed or run."""
        try:
            ok = JobId.parse(jid).workload == self.ctx.id
        except ValueError:
            ok = False
        if ok:
            return False
        ctx = self.ctx
        ctx.r.zrem(ctx.ledger.k.pending, jid)
        reason = (
            f"workload {ctx.id}: lease entry {jid[:80]!r} is not one of its job ids (written behind rqp's back); "
            "dropped, nothing reclaimed"
        )
        record_rejection(ctx.r, job=jid[:200], workload=ctx.id, worker=ctx.me, reason=reason)
        log.warning("%s", reason)
        return True

    def hand_back(self, jid: str) -> None:
        """A processor that cannot open the workload handed ``jid`` back untouched: queued again,
        as the next generation with the same attempts (nothing ran, so no attempt was spent)."""
        ctx = self.ctx
        if self._foreign(jid):
            return
        sealed = ctx.ledger.reclaim(jid)
        pipe = ctx.r.pipeline(transaction=True)
        ctx.ledger.forget_released(pipe, jid)
        if sealed is not None:
            spec = open_spec(ctx.workload, jid, sealed)
            again = replace(spec, queued_at=time.time(), part=secrets.token_hex(PART_TOKEN_BYTES))
            queue_specs(ctx, pipe, [again], JobId.parse(jid).gen + 1)
        pipe.execute()
        log.warning("workload %s: %s was handed back by a processor that cannot open it; queued again", ctx.id, jid)

    def _rq_failure_reason(self, job: Job | None, status: JobStatus | None) -> str:
        err = self.ctx.ledger.processor_error()
        if err:
            return err
        result = job.latest_result() if job is not None else None
        if result is not None and result.type == Result.Type.FAILED and result.exc_string:
            lines = [ln for ln in result.exc_string.strip().splitlines() if ln.strip()]
            if lines:  # the exception's own line, without its class (rqp's messages name their subject)
                return re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1].strip())
        return f"its RQ job was {status.value if status else 'lost from Redis'}"

    def reclaim(self, jid: str, reason: str, *, lost: bool = False) -> None:
        """Re-run what ``jid`` left undone as its next generation. When its worker was ``lost``
        (and the chunk has lost fewer than ``FREE_LOST_RERUNS``) no attempt is spent: the re-run
        is counted in the spec's ``reruns`` and shown apart in the records' status. Otherwise the
        attempt that ran is spent; records out of attempts fail with ``reason`` (or the worker's
        own error). A chunk a draining processor handed back (``rqp.ledger.hand_back_drained``:
        an eviction notice, SIGTERM, a scale-in) spends neither an attempt nor a free re-run; its
        records are counted as requeued after preemption."""
        ctx = self.ctx
        if self._foreign(jid):
            return
        drained = take_drained(ctx.r, ctx.ledger.k, jid)
        abandoned = ctx.ledger.abandoned(jid)  # the worker's own error, when it gave the chunk up
        reason = abandoned or reason
        sealed = ctx.ledger.reclaim(jid)
        if sealed is None:
            return  # it committed first
        try:
            spec = open_spec(ctx.workload, jid, sealed)
        except ForbiddenJobError as exc:
            log.error("workload %s: cannot reclaim %s: %s", ctx.id, jid, exc)
            return
        records = spec.records()
        left = [
            (rid, att)
            for (rid, att), done in zip(records, ctx.ledger.done_bits([r for r, _ in records]), strict=True)
            if not done
        ]
        free = drained or (lost and not abandoned and spec.reruns < FREE_LOST_RERUNS)
        if free:  # nothing failed: the same attempts again
            again, give_up = left, []
        else:  # the attempt that ran was spent: the same rule as a record that failed in process()
            again = [(rid, att + 1) for rid, att in left if may_retry(att, spec.max_attempts)]
            give_up = [(rid, att) for rid, att in left if not may_retry(att, spec.max_attempts)]
        reruns = spec.reruns + 1 if lost and not abandoned and not drained else spec.reruns
        now = time.time()
        pipe = ctx.r.pipeline(transaction=True)
        key_of = spec.key_of()
        if again:
            s = spec
            runs = runs_of(again)
            keys = tuple(key_of[r] for f, n, _ in runs for r in range(f, f + n)) if key_of else None
            respec = ChunkSpec(
                ctx.id,
                s.chunk,
                runs,
                s.max_attempts,
                s.backoff,
                s.backoff_max,
                now,
                s.round,
                keys,
                s.lines,
                reruns,
                secrets.token_hex(PART_TOKEN_BYTES),
            )  # each queueing its own part token (``rqp.parts.part_name``)
            queue_specs(ctx, pipe, [respec], JobId.parse(jid).gen + 1)
        if give_up:
            failed = [
                StatusRecord(
                    ctx.id,
                    rid,
                    FAILED,
                    att,
                    f"chunk {spec.chunk} was re-run {att} times: {reason}",
                    None,
                    None,
                    now,
                    None,
                    jid,
                    key_of.get(rid),
                    reruns,
                ).to_json()
                for rid, att in give_up
            ]
            ctx.ledger.fail_records(
                pipe,
                [(rid, ctx.workload.seal("status", rid, raw)) for (rid, _), raw in zip(give_up, failed, strict=True)],
            )
            queue = ctx.settings.status_queue
            outbox_add(pipe, queue, pack_messages(ctx.workload, queue, "status", failed, ctx.mq.max_message_bytes), now)
        if ChunkKind.of(spec.chunk) is ChunkKind.DATA:
            # its records that failed for good are kept for 'rqp retry' (sealed again under the
            # data key, like every kept record); the rest go with it
            ctx.ledger.retire_chunk(pipe, spec.chunk, self._kept(spec.chunk, give_up), requeued=bool(again))
        ctx.ledger.count_reclaimed(pipe)
        if drained:
            count_preempted(pipe, ctx.ledger.k, len(again))
        pipe.execute()
        metrics.CHUNKS_RECLAIMED.labels(ctx.id).inc()
        log.warning(
            "workload %s: chunk %s re-queued (%d records) or failed (%d): %s%s",
            ctx.id,
            spec.chunk,
            len(again),
            len(give_up),
            reason,
            " (handed back by a draining processor; no attempt spent)"
            if drained
            else f" (re-run {reruns} after a lost worker; no attempt spent)"
            if free
            else "",
        )

    def _kept(self, chunk: str, give_up: list[tuple[int, int]]) -> list[tuple[int, bytes]]:
        """The records of ``give_up`` as kept for ``rqp retry``: sealed again under the data key."""
        if not give_up:
            return []
        ctx = self.ctx
        values = ctx.ledger.chunk_records(chunk)
        seals = ctx.workload.scope(chunk)
        kept = []
        if isinstance(values, bytes):  # the chunk's one sealed value (rqp.chunk_records)
            try:
                plain = dict(zip(*open_records(seals, values), strict=True))
            except IntegrityError as exc:
                log.error("workload %s: the records of chunk %s are not kept for 'rqp retry': %s", ctx.id, chunk, exc)
                return []
            return [(rid, ctx.workload.seal("record", rid, plain[rid])) for rid, _ in give_up if rid in plain]
        for rid, _ in give_up:
            if rid in values:
                try:
                    kept.append((rid, ctx.workload.seal("record", rid, seals.open_sealed("record", rid, values[rid]))))
                except IntegrityError as exc:
                    log.error("workload %s: record %d is not kept for 'rqp retry': %s", ctx.id, rid, exc)
        return kept
