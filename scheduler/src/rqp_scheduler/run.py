"""Supervise one workload from its first record to its summary.

``WorkloadRun.step()`` does a bounded amount of work and returns; the scheduler loop steps every
active workload in turn, so one scheduler supervises many workloads and a crash at any point is
resumed by the next scheduler from what Redis holds:

* enqueue: records stream out of the decrypted data into chunks, kept ``window`` chunks ahead of
  the processors (so Redis holds only the in-flight window, and a data file larger than memory
  works); each chunk is one MULTI: sealed records, queued statuses, sealed spec, the RQ job and
  the cursor, so a restart neither skips nor duplicates a record;
* retries: failed records whose backoff is due go out again in retry chunks;
* reclaim: a chunk whose lease ran out (dead worker), whose RQ job failed, or that RQ lost is
  re-run, or failed once it has used up its attempts;
* finish: when every record is done or failed, results are consolidated and a summary written.

Every key and value in Redis goes through the workload's ``rqp.ledger.Ledger``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from itertools import islice
from typing import Any

import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.results import Result

from rqp import metrics_http as metrics
from rqp import sandbox
from rqp.config import Settings
from rqp.errors import (
    BlobNotFoundError,
    ForbiddenJobError,
    IntegrityError,
    RqpError,
    ScriptError,
    StorageUnavailableError,
    WorkloadError,
)
from rqp.jobs import ENTRY_POINT, JOB_TIMEOUT, ChunkSpec, JSONSerializer, RqpJob, open_spec, runs_of, seal_spec
from rqp.keys import KeyProvider
from rqp.ledger import (
    ChunkKind,
    Control,
    Head,
    JobId,
    Ledger,
    LockHeld,
    Meta,
    Priority,
    RetryEntry,
    State,
    chunk_name,
    flush_outbox,
    job_id,
    outbox_add,
    publish_outbox,
    record_rejection,
)
from rqp.messages import make_envelope, pack_messages
from rqp.outcome import may_retry
from rqp.records import LineMap, parse_records
from rqp.signing import TrustStore
from rqp.status import FAILED, QUEUED, StatusRecord, read_progress
from rqp.storage import BlobStore, MessageQueue
from rqp.summary import read_summary
from rqp.workload import Workload

from .consolidate import StateError, consolidate

__all__ = ["LOCK_SECONDS", "WorkloadRun"]

log = logging.getLogger("rqp.scheduler")

LOCK_SECONDS = 30
RECLAIM_INTERVAL = 1.0
RQ_CHECK_INTERVAL = 5.0
OUTBOX_INTERVAL = 5.0
PROGRESS_INTERVAL = 2.0
#: records per enqueue transaction: several chunks share one MULTI and one cursor check
ENQUEUE_BATCH_RECORDS = 4096
#: how long failed RQ jobs keep their reason in Redis
FAILURE_TTL = 7 * 86400
SCRIPT_FAILED = "the workload's script failed to load (details are encrypted: run 'rqp status' with the KEK, or see the scheduler's log)"


class WorkloadRun:
    def __init__(
        self,
        settings: Settings,
        r: redis.Redis,
        store: BlobStore,
        mq: MessageQueue,
        keys: KeyProvider,
        trust: TrustStore,
        workload_id: str,
        hosts: sandbox.HostFactory | None = None,
        writer: ThreadPoolExecutor | None = None,
    ) -> None:
        self.settings = settings
        self.r = r
        self.store = store
        self.mq = mq
        self.id = workload_id
        self.ledger = Ledger(r, workload_id)
        self.me = f"{socket.gethostname()}:{os.getpid()}"
        #: the RQ queue of each priority (workers take from high, then normal, then low)
        self.queues = {
            p: Queue(p.queue(settings.rq_queue), connection=r, job_class=RqpJob, serializer=JSONSerializer)
            for p in Priority
        }
        self.queue = self.queues[Priority.NORMAL]
        self.hosts = hosts or sandbox.HostFactory(sandbox.SandboxConfig.from_settings(settings), warm=False)
        #: one thread that sends enqueue transactions, so sealing the next batch overlaps Redis
        #: applying the last (the socket wait releases the GIL); shared by the scheduler's runs
        self.writer = writer or ThreadPoolExecutor(max_workers=1, thread_name_prefix="rqp-enqueue")
        # the submitter's signature is checked here, before any key is unwrapped or byte decrypted
        self.workload = Workload.open(store, keys, workload_id, trust)
        self.records: Iterator[tuple[bytes, str | None]] | None = None
        self._parser: Any = None
        self._lines = LineMap()  # the JSON Lines records' lines (a malformed one names its line)
        self.exhausted = False
        self.finished = False
        self.chunk_size = settings.chunk_size
        self._last = {"reclaim": 0.0, "rq": 0.0, "outbox": 0.0, "progress": 0.0, "lock": 0.0, "workers": 0.0}
        self._workers_seen = 0
        self._needs_reopen = False
        self._source: bytes | None = None
        self._bytes_enqueued = 0
        self._records_enqueued = 0
        #: the enqueue as this scheduler sealed it last (``rqp.ledger.Head``)
        self._head = Head()
        self._unqueued: set[str] = set()
        #: queued jobs taken off the RQ queue while the workload is paused or cancelling
        self._parked = False

    # ------------------------------------------------------------------ start / resume
    def start(self) -> WorkloadRun:
        self._take_lock()
        meta = self.ledger.meta()
        if meta.get(Meta.STATE) == State.DONE:
            self.finished = True
            self.ledger.release_lock(self.me)
            return self
        if meta:
            try:
                # the workload that was started is the one that resumes: a replaced one is refused
                self.workload.check_pin(self.ledger.pin())
            except RqpError:
                self.ledger.release_lock(self.me)
                raise
        source = self.workload.script_source()
        try:
            # the script's import and setup() run in a script host, never in this process
            sandbox.check_script(self.hosts, self.id, source)
        except ScriptError as exc:
            self._fail_workload(str(exc))
            raise
        if not meta:
            m = self.workload.manifest
            self.ledger.begin(
                now=time.time(), fmt=m.format, scheduler=self.me, max_attempts=self.settings.max_attempts,
                pin=self.workload.seal_pin(), signer=self.workload.signer, head=Head().seal(self.workload),
            )  # fmt: skip
            self._event("started", {"format": m.format, "data_bytes": m.data.plain_size})
            log.info("workload %s: started", self.id)
        else:
            try:
                head = self._read_head()
                if head.closed:  # finished, and run again by 'rqp retry'
                    self._begin_round(head)
            except IntegrityError as exc:
                self._fail_workload(str(exc), generic=str(exc))
                raise
            self.ledger.resume(self.me)
            log.info("workload %s: resuming after %s records", self.id, head.enqueued)
        self._source = source
        self._open_records()
        return self

    def _read_head(self) -> Head:
        """The enqueue's sealed head as Redis holds it; ``StateError`` when it does not open."""
        try:
            return Head.open(self.workload, self.ledger.head())
        except IntegrityError:
            raise StateError(self.id, "the enqueue's sealed head is missing or does not open under its key") from None

    def _begin_round(self, closed: Head) -> None:
        """``rqp retry``: the records the sealed summary lists as failed run again, as first
        attempts of a new round -- the summary, not Redis, says which."""
        try:
            failures = read_summary(self.store, self.workload).failures
        except BlobNotFoundError:
            raise StateError(self.id, "its head says finished, but it has no summary") from None
        head = Head(closed.enqueued, closed.chunks, closed.total, closed.round + 1)
        now = time.time()
        note = f"queued again by 'rqp retry' (round {head.round})"
        queued = [
            (
                f.id,
                self.workload.seal(
                    "status", f.id, StatusRecord(self.id, f.id, QUEUED, 0, note, now, key=f.key).to_json()
                ),
            )
            for f in failures
        ]
        pipe = self.r.pipeline(transaction=True)
        self.ledger.new_round(pipe, head.seal(self.workload), queued, now)
        pipe.execute()
        log.info("workload %s: round %d: %d failed records queued again", self.id, head.round, len(failures))

    def _open_records(self) -> None:
        """(Re)position the record stream at the committed cursor: after a restart, or after a
        Redis error left it unknown whether the last chunk was enqueued."""
        self._head = self._read_head()
        self.exhausted = self._head.total is not None
        self.records = None
        self._close_parser()
        if not self.exhausted:
            m = self.workload.manifest
            if m.format == "script":
                # the script's parse() runs in a script host of its own, fed the decrypted data
                assert self._source is not None
                recs = self._parser = sandbox.parse_records(
                    self.hosts, self.id, self._source, self.workload.data_chunks()
                )
            else:
                self._lines = LineMap()  # read again from the start: every record's line again
                recs = parse_records(
                    m.format, self.workload.data_chunks(), workload_id=self.id, delimiter=m.delimiter, lines=self._lines
                )
            self.records = islice(recs, self._head.enqueued, None)

    def _close_parser(self) -> None:
        if self._parser is not None:
            self._parser.close()  # ends its script host
            self._parser = None

    def reset_after_error(self) -> None:
        self.records = None
        self._close_parser()
        self._needs_reopen = True

    def _take_lock(self) -> None:
        try:
            self.ledger.take_lock(self.me, LOCK_SECONDS, _holder_dead)
        except LockHeld as held:
            raise WorkloadError(
                f"workload {self.id} is already being scheduled by {held.holder}; wait for it, or stop it and retry in {LOCK_SECONDS}s"
            ) from None

    def _renew_lock(self) -> None:
        if not self.ledger.renew_lock(self.me, LOCK_SECONDS):
            raise WorkloadError(
                f"workload {self.id}: another scheduler took over its lock; this one stops supervising it"
            )

    # ------------------------------------------------------------------ one step
    def step(self) -> bool:
        """Advance; True once the workload is finished (summary written). Redis state (``StateError``)
        or data (a tampered or truncated ``data.enc``) that does not authenticate fails the workload
        for all to see."""
        if self.finished:
            return True
        try:
            return self._step()
        except IntegrityError as exc:
            if self.ledger.state() != State.FAILED:
                self._fail_workload(str(exc), generic=str(exc))
            self._close_parser()
            raise

    def _step(self) -> bool:
        if self._needs_reopen:
            self._open_records()
            self._needs_reopen = False
        now = time.monotonic()
        if now - self._last["lock"] > LOCK_SECONDS / 3:
            self._renew_lock()
            self._last["lock"] = now
        control = self.ledger.control()
        if control is not None:
            return self._held(control, now)
        if self._parked:
            self._unpark()
        try:
            self._fill_window()
        except ScriptError as exc:  # the script's parse() failed: the workload cannot be read
            self._fail_workload(str(exc))
            self._close_parser()
            raise
        self._due_retries()
        self._every("reclaim", RECLAIM_INTERVAL, now, self._reclaim_expired)
        self._every("rq", RQ_CHECK_INTERVAL, now, self._reclaim_lost)
        self._housekeeping(now)
        if self.exhausted and self.ledger.idle() and self._cursor_matches():
            try:
                self._finish()
            except StorageUnavailableError as exc:
                log.warning("workload %s: cannot write results yet (%s); will retry", self.id, exc)
                return False
            except IntegrityError as exc:
                # Redis's state (or a result part) does not add up under the workload's key: fail
                # it for all to see, never finish it short
                if not isinstance(exc, StateError):
                    self._fail_workload(str(exc), generic=str(exc))
                    self._close_parser()
                raise
            return True
        return False

    def _every(self, what: str, interval: float, now: float, task: Callable[[], object]) -> None:
        """Run a periodic ``task`` when ``interval`` has passed since it last completed."""
        if now - self._last[what] > interval:
            task()
            self._last[what] = now

    def _housekeeping(self, now: float) -> None:
        """What every step does, running or held: publish the outbox, announce progress."""
        self._every("outbox", OUTBOX_INTERVAL, now, lambda: flush_outbox(self.r, self.mq))
        self._every("progress", PROGRESS_INTERVAL, now, self._progress_event)

    # ------------------------------------------------------------------ pause, resume, cancel
    def _held(self, control: Control, now: float) -> bool:
        """A step while paused or cancelling: nothing new is queued; chunks in hand finish (a
        dead worker's chunk is still re-run, and parked like the rest). Cancelling ends, once
        nothing is in flight, in a consolidated, ``cancelled`` workload."""
        self._park()
        if control is Control.CANCEL:
            self._drop_parked()
        self._every("reclaim", RECLAIM_INTERVAL, now, self._reclaim_expired)
        self._housekeeping(now)
        if control is Control.CANCEL and self.ledger.in_flight() == 0:
            self._finish(cancelled=True)
            return True
        return False

    def _park(self) -> None:
        """Take the chunks not yet started off the RQ queue (they stay pending, with their specs)."""
        queued = self.ledger.queued()
        if queued:
            pipe = self.r.pipeline(transaction=False)
            for jid in queued:
                for q in self.queues.values():
                    q.remove(jid, pipeline=pipe)
            pipe.execute()
        if not self._parked:
            log.info("workload %s: paused: %d queued chunks held back", self.id, len(queued))
        self._parked = True

    def _unpark(self) -> None:
        queued = self.ledger.queued()
        in_queue = self._in_queues()
        queue = self.queues[self.ledger.priority()]
        pipe = self.r.pipeline(transaction=False)
        for jid in queued:
            if jid not in in_queue:
                queue.push_job_id(jid, pipeline=pipe)
        pipe.execute()
        self._parked = False
        log.info("workload %s: resumed: %d chunks queued again", self.id, len(queued))

    def _drop_parked(self) -> None:
        """Cancelling: the chunks not started and the retries not yet due are dropped."""
        for jid in self.ledger.queued():
            sealed = self.ledger.reclaim(jid)
            job = RqpJob.fetch_many([jid], connection=self.r, serializer=JSONSerializer)[0]
            if job is not None:
                job.delete(remove_from_queue=True)
            if sealed is not None and ChunkKind.of(JobId.parse(jid).chunk) is ChunkKind.DATA:
                pipe = self.r.pipeline(transaction=True)
                self.ledger.retire_chunk(pipe, JobId.parse(jid).chunk, [], requeued=False)
                pipe.execute()
        self.ledger.drop_all_retries()

    def wait_hint(self) -> float:
        """How long the loop may block before stepping again."""
        return 0.02 if not self.exhausted else 0.1

    # ------------------------------------------------------------------ enqueue
    def _window(self) -> int:
        if self.settings.window_chunks:
            return self.settings.window_chunks
        if time.monotonic() - self._last["workers"] > 5:
            self._workers_seen = Worker.count(connection=self.r, queue=self.queue)
            self._last["workers"] = time.monotonic()
        return max(16, 4 * self._workers_seen)

    def _adapt_chunk_size(self) -> None:
        if not self.settings.adaptive_chunks:
            return
        records, seconds = self.ledger.perf()
        if not records or not seconds:
            return
        per_record = seconds / max(1, records)
        if per_record <= 0:
            self.chunk_size = self.settings.chunk_max
            return
        ideal = self.settings.chunk_target_seconds / per_record
        # keep enough chunks for every worker to share the tail: about 4 per worker in total
        if self._bytes_enqueued and self._records_enqueued:
            estimate = self.workload.manifest.data.plain_size / (self._bytes_enqueued / self._records_enqueued)
            ideal = min(ideal, estimate / (4 * max(1, self._workers_seen)))
        self.chunk_size = int(min(self.settings.chunk_max, max(self.settings.chunk_min, ideal)))

    def _fill_window(self) -> None:
        """Queue chunks until ``window`` are in flight. Several chunks share one transaction, and
        while one transaction is on its way to Redis the next batch is already being read and
        sealed (at most one write in flight; every write is waited for before this returns, so
        the rest of ``step`` always sees Redis as the enqueue left it)."""
        if self.exhausted or self.records is None:
            return
        in_flight = self.ledger.in_flight()
        window = self._window()
        if in_flight >= window:
            return
        self._adapt_chunk_size()
        budget = window - in_flight
        writing: Future[Any] | None = None
        try:
            while budget > 0 and not self.exhausted:
                chunks = self._next_batches(budget)
                budget -= max(1, len(chunks))
                known = self.ledger.chunks_known(
                    [chunk_name(ChunkKind.DATA, self._head.chunks + i) for i in range(len(chunks))]
                )
                pipe, head = self._prepare_chunks(chunks, known)
                if writing is not None:
                    last, writing = writing, None
                    last.result()
                if not self._cursor_matches():
                    return
                writing = self.writer.submit(pipe.execute)
                self._records_enqueued += head.enqueued - self._head.enqueued
                metrics.RECORDS_ENQUEUED.labels(self.id).inc(head.enqueued - self._head.enqueued)
                self._head = head
        finally:
            if writing is not None:
                writing.result()

    def _next_batches(self, budget: int) -> list[list[tuple[bytes, str | None]]]:
        """Up to one transaction's worth of chunks from the record stream; marks the stream
        exhausted at its end (a last, possibly empty, batch carries the total)."""
        assert self.records is not None
        chunks: list[list[tuple[bytes, str | None]]] = []
        for _ in range(min(budget, max(1, ENQUEUE_BATCH_RECORDS // self.chunk_size))):
            batch = list(islice(self.records, self.chunk_size))
            if len(batch) < self.chunk_size:
                self.exhausted = True
            if batch or self.exhausted:
                chunks.append(batch)
            if self.exhausted:
                break
        return chunks

    def _cursor_matches(self) -> bool:
        """Redis still holds the head this scheduler sealed last (a restart without a synced AOF
        can lose the last writes); if not, go back to the head it has -- authenticated: a head
        that does not open is ``StateError``, the plain counts are never read."""
        head = self._read_head()
        if head == self._head:
            return True
        log.warning(
            "workload %s: Redis holds the enqueue at %d records, this scheduler queued %d; re-reading from there",
            self.id,
            head.enqueued,
            self._head.enqueued,
        )
        self._open_records()
        return False

    def _spec(
        self, chunk: str, records: list[tuple[int, int]], queued_at: float, key_of: dict[int, str] | None = None
    ) -> ChunkSpec:
        """A chunk's spec; ``key_of``: the records' own ids (``--id-field``), by record id."""
        s = self.settings
        runs = runs_of(records)
        keys = tuple(key_of[r] for f, n, _ in runs for r in range(f, f + n)) if key_of else None
        lines = self._lines.within(runs[0][0], runs[-1][0] + runs[-1][1] - 1) if runs else ()
        return ChunkSpec(
            self.id,
            chunk,
            runs,
            s.max_attempts,
            s.retry_backoff,
            s.retry_backoff_max,
            queued_at,
            self._head.round,
            keys,
            lines or None,
        )

    def _prepare_chunks(self, chunks: list[list[tuple[bytes, str | None]]], known: set[str]) -> tuple[Any, Head]:
        """One transaction that queues ``chunks`` from the cursor on: per chunk its records (one
        value, sealed under the chunk's own key), a sealed spec and an RQ job; failed statuses
        for malformed records; the head. A record's "queued" state is not written: no status
        record, an id below the cursor and neither bit set means queued
        (``rqp.status.record_status``). Chunks in ``known`` (Redis has them already) are passed
        over. Returns the transaction and the head it seals."""
        now = time.time()
        w = self.workload
        id_field = w.manifest.id_field
        rid = self._head.enqueued
        chunk_no = self._head.chunks
        statuses: list[tuple[int, bytes]] = []
        published: list[bytes] = []
        malformed: list[int] = []
        specs: list[ChunkSpec] = []
        pipe = self.r.pipeline(transaction=True)
        for batch in chunks:
            if not batch:
                continue
            if chunk_name(ChunkKind.DATA, chunk_no) in known:
                log.warning("workload %s: chunk %d is in Redis already; not queued again", self.id, chunk_no)
                rid += len(batch)
                chunk_no += 1
                continue
            good: list[tuple[int, bytes]] = []
            key_of: dict[int, str] = {}
            for payload, parse_error in batch:
                error = parse_error
                if error is None and id_field is not None:
                    key, error = record_key(payload, id_field, rid, self._lines)
                    if key is not None:
                        key_of[rid] = key
                if error is not None:
                    raw = StatusRecord(self.id, rid, FAILED, 0, error, now, None, now, self.me, None).to_json()
                    statuses.append((rid, w.seal("status", rid, raw)))
                    published.append(raw)
                    malformed.append(rid)
                else:
                    good.append((rid, payload))
                    self._bytes_enqueued += len(payload) + 1
                rid += 1
            if good:
                chunk = chunk_name(ChunkKind.DATA, chunk_no)
                specs.append(self._spec(chunk, [(i, 1) for i, _ in good], now, key_of))
                self.ledger.put_chunk(pipe, chunk, w.scope(chunk).seal_packed("record", good))
            chunk_no += 1
        self._queue_specs(pipe, specs, 0)
        self.ledger.put_statuses(pipe, statuses)
        self.ledger.mark_failed(pipe, malformed)
        if published:
            queue = self.settings.status_queue
            outbox_add(pipe, queue, pack_messages(w, queue, "status", published, self.mq.max_message_bytes), now)
        head = self._head.advanced(
            rid - self._head.enqueued, chunk_no - self._head.chunks, rid if self.exhausted else None
        )
        self.ledger.advance(pipe, head, head.seal(w))
        return pipe, head

    def _queue_specs(self, pipe: Any, specs: list[ChunkSpec], gen: int) -> None:
        """Queue one RQ job per spec (generation ``gen``), each carrying its spec sealed to the
        job id; the specs are also kept by job id, and the jobs are pending until leased."""
        if not specs:
            return
        sealed: dict[str, bytes] = {}
        jobs = []
        for spec in specs:
            jid = job_id(self.id, spec.chunk, gen)
            sealed[jid] = seal_spec(self.workload, jid, spec)
            jobs.append(
                Queue.prepare_data(
                    ENTRY_POINT,
                    args=[self.id, base64.b64encode(sealed[jid]).decode()],
                    job_id=jid,
                    timeout=JOB_TIMEOUT,
                    result_ttl=0,
                    failure_ttl=FAILURE_TTL,
                    description=f"rqp {self.id} {spec.chunk} ({spec.size} records)",
                )
            )
        self.ledger.add_jobs(pipe, sealed)
        self.queues[self.ledger.priority()].enqueue_many(jobs, pipeline=pipe)

    # ------------------------------------------------------------------ retries
    def _due_retries(self) -> None:
        due, keys = self._asked_for(self.ledger.due_retries(time.time(), self.settings.chunk_max))
        if not due:
            return
        spec = self._spec(
            chunk_name(ChunkKind.RETRY, self.ledger.next_retry_seq()), [(e.rid, e.attempt) for e in due], time.time(),
            keys,
        )  # fmt: skip
        pipe = self.r.pipeline(transaction=True)
        self.ledger.take_retries(pipe, due)
        self._queue_specs(pipe, [spec], 0)
        pipe.execute()
        log.info("workload %s: retrying %d records", self.id, len(due))

    def _asked_for(self, due: list[RetryEntry]) -> tuple[list[RetryEntry], dict[int, str]]:
        """The retry entries a sealed commit asked for: record R's attempt A only while R's status
        record (sealed by the worker whose commit queued the retry) says "queued" after attempt
        A - 1. Any other entry was written into Redis by someone else: it is dropped and logged
        in ``rqp:rejected``, and no spec is sealed for it. Also returns the records' own ids
        (``--id-field``), from those status records."""
        keys: dict[int, str] = {}
        if not due:
            return due, keys
        good, forged = [], []
        for e, sealed in zip(due, self.ledger.statuses([e.rid for e in due]), strict=True):
            try:
                st = StatusRecord.open(self.workload, e.rid, sealed) if sealed is not None else None
            except IntegrityError:
                st = None
            if st is not None and st.state == QUEUED and st.attempts == e.attempt - 1:
                good.append(e)
                if st.key is not None:
                    keys[e.rid] = st.key
            else:
                forged.append(e)
        if forged:
            self.ledger.drop_retries([e.member for e in forged])
            for e in forged[:10]:
                record_rejection(
                    self.r, job=f"retry {e.member}", workload=self.id, worker=self.me,
                    reason=f"retry of record {e.rid} (attempt {e.attempt}) of workload {self.id} was not asked for by "
                    f"a sealed commit (written into Redis by someone else); dropped",
                )  # fmt: skip
            log.error("workload %s: %d retry entries no commit asked for were dropped", self.id, len(forged))
        return good, keys

    # ------------------------------------------------------------------ reclaim
    def _reclaim_expired(self) -> None:
        for jid in self.ledger.expired(time.time()):
            self._reclaim(jid, "its worker stopped renewing the chunk lease (worker died or hung)")

    def _reclaim_lost(self) -> None:
        """Queued chunks whose RQ job failed, vanished, started on a worker that died before
        taking the lease, or says "queued" while sitting in no queue (a Redis restart can lose
        the write that would have moved it on); the last must be seen twice to count. RQ's own
        view comes through its public API (``Job.fetch_many``)."""
        queued = self.ledger.queued()
        if not queued:
            self._unqueued.clear()
            return
        jobs = RqpJob.fetch_many(queued, connection=self.r, serializer=JSONSerializer)
        statuses = [job.get_status(refresh=False) if job is not None else None for job in jobs]
        in_queue = self._in_queues() if JobStatus.QUEUED in statuses else set()
        horizon = time.time() - self.settings.lease_seconds
        unqueued = set()
        released = self.ledger.released_among(queued)
        for jid, job, status in zip(queued, jobs, statuses, strict=True):
            if jid in released:
                self._hand_back(jid)
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
                continue
            if status is None and self.ledger.lease(jid) != float("inf"):
                continue  # committed (result_ttl=0 deleted the job) or leased meanwhile
            reason = (
                self._rq_failure_reason(job, status)
                if status != JobStatus.QUEUED
                else "its RQ job was lost from the queue (Redis restart?)"
            )
            self._reclaim(jid, reason)
        self._unqueued = unqueued

    def _hand_back(self, jid: str) -> None:
        """A processor that cannot open the workload handed ``jid`` back untouched: queued again,
        as the next generation with the same attempts (nothing ran, so no attempt was spent)."""
        sealed = self.ledger.reclaim(jid)
        pipe = self.r.pipeline(transaction=True)
        self.ledger.forget_released(pipe, jid)
        if sealed is not None:
            spec = open_spec(self.workload, jid, sealed)
            again = replace(spec, queued_at=time.time())
            self._queue_specs(pipe, [again], JobId.parse(jid).gen + 1)
        pipe.execute()
        log.warning("workload %s: %s was handed back by a processor that cannot open it; queued again", self.id, jid)

    def _in_queues(self) -> set[str]:
        """Job ids waiting in any of the RQ queues (a workload's priority may have changed)."""
        return {jid for q in self.queues.values() for jid in q.get_job_ids()}

    def _rq_failure_reason(self, job: Job | None, status: JobStatus | None) -> str:
        err = self.ledger.processor_error()
        if err:
            return err
        result = job.latest_result() if job is not None else None
        if result is not None and result.type == Result.Type.FAILED and result.exc_string:
            lines = [ln for ln in result.exc_string.strip().splitlines() if ln.strip()]
            if lines:  # the exception's own line, without its class (rqp's messages name their subject)
                return re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1].strip())
        return f"its RQ job was {status.value if status else 'lost from Redis'}"

    def _reclaim(self, jid: str, reason: str) -> None:
        reason = self.ledger.abandoned(jid) or reason  # the worker's own error, when it gave the chunk up
        sealed = self.ledger.reclaim(jid)
        if sealed is None:
            return  # it committed first
        try:
            spec = open_spec(self.workload, jid, sealed)
        except ForbiddenJobError as exc:
            log.error("workload %s: cannot reclaim %s: %s", self.id, jid, exc)
            return
        records = spec.records()
        left = [
            (rid, att)
            for (rid, att), done in zip(records, self.ledger.done_bits([r for r, _ in records]), strict=True)
            if not done
        ]
        # the attempt that ran was spent: the same rule as a record that failed in process()
        again = [(rid, att + 1) for rid, att in left if may_retry(att, spec.max_attempts)]
        give_up = [(rid, att) for rid, att in left if not may_retry(att, spec.max_attempts)]
        now = time.time()
        pipe = self.r.pipeline(transaction=True)
        key_of = spec.key_of()
        if again:
            s = spec
            runs = runs_of(again)
            keys = tuple(key_of[r] for f, n, _ in runs for r in range(f, f + n)) if key_of else None
            respec = ChunkSpec(self.id, s.chunk, runs, s.max_attempts, s.backoff, s.backoff_max, now, s.round, keys)
            self._queue_specs(pipe, [respec], JobId.parse(jid).gen + 1)
        if give_up:
            failed = [
                StatusRecord(
                    self.id,
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
                ).to_json()
                for rid, att in give_up
            ]
            self.ledger.fail_records(
                pipe,
                [(rid, self.workload.seal("status", rid, raw)) for (rid, _), raw in zip(give_up, failed, strict=True)],
            )
            queue = self.settings.status_queue
            outbox_add(
                pipe, queue, pack_messages(self.workload, queue, "status", failed, self.mq.max_message_bytes), now
            )
        if ChunkKind.of(spec.chunk) is ChunkKind.DATA:
            # its records that failed for good are kept for 'rqp retry' (sealed again under the
            # data key, like every kept record); the rest go with it
            self.ledger.retire_chunk(pipe, spec.chunk, self._kept(spec.chunk, give_up), requeued=bool(again))
        self.ledger.count_reclaimed(pipe)
        pipe.execute()
        metrics.CHUNKS_RECLAIMED.labels(self.id).inc()
        log.warning(
            "workload %s: chunk %s re-queued (%d records) or failed (%d): %s",
            self.id,
            spec.chunk,
            len(again),
            len(give_up),
            reason,
        )

    def _kept(self, chunk: str, give_up: list[tuple[int, int]]) -> list[tuple[int, bytes]]:
        if not give_up:
            return []
        values = self.ledger.chunk_records(chunk)
        seals = self.workload.scope(chunk)
        kept = []
        for rid, _ in give_up:
            if rid in values:
                try:
                    kept.append((rid, self.workload.seal("record", rid, seals.open_sealed("record", rid, values[rid]))))
                except IntegrityError as exc:
                    log.error("workload %s: record %d is not kept for 'rqp retry': %s", self.id, rid, exc)
        return kept

    # ------------------------------------------------------------------ events and finish
    def _event(self, kind: str, data: dict[str, Any], durable: bool = False) -> None:
        payload = {"event": kind, "workload": self.id, "at": time.time(), **data}
        message = make_envelope(self.workload, self.settings.events_queue, "event", payload)
        if durable:
            pipe = self.r.pipeline(transaction=True)
            outbox_add(pipe, self.settings.events_queue, [message])
            pipe.execute()
            publish_outbox(self.r, self.mq, [message[0]])
        else:
            try:
                self.mq.send(self.settings.events_queue, message[1])
            except RqpError as exc:
                log.warning("progress event not published: %s", exc)

    def _progress_event(self) -> None:
        p = read_progress(self.r, self.id)
        if p is not None:
            self._event(
                "progress",
                {
                    "done": p.done,
                    "failed": p.failed,
                    "total": p.total,
                    "enqueued": p.enqueued,
                    "rate": round(p.rate, 1),
                },
            )

    def _fail_workload(self, error: str, generic: str | None = None) -> None:
        """The workload failed as a whole. ``error`` may quote the user's script or data: only its
        sealed form goes to Redis, with ``generic`` (a line that quotes neither) in clear."""
        sealed = base64.b64encode(self.workload.seal("error", "", error.encode())).decode()
        self.ledger.fail(generic=generic or SCRIPT_FAILED, sealed=sealed, now=time.time())
        self._event("failed", {"error": error}, durable=True)
        self.ledger.release_lock(self.me)

    def _finish(self, cancelled: bool = False) -> None:
        if not cancelled:
            self.ledger.set_state(State.CONSOLIDATING)
        head = self._head
        if cancelled and head.total is None:
            head = Head(head.enqueued, head.chunks, head.enqueued, head.round)  # what was read before the cancel
        summary = consolidate(
            self.ledger, self.store, self.workload, head, keep_parts=self.settings.keep_parts, cancelled=cancelled
        )
        closed = Head(head.enqueued, head.chunks, head.total, head.round, closed=True)
        self.ledger.finish(
            finished_at=summary.finished_at, results_sha256=summary.results.sha256,
            ttl=self.settings.status_ttl_days * 86400, keep_records=bool(summary.failed or summary.cancelled),
            sealed_head=closed.seal(self.workload), state=State.CANCELLED if cancelled else State.DONE,
        )  # fmt: skip
        self._head = closed
        self._event(
            "cancelled" if cancelled else "done",
            {
                "total": summary.total,
                "done": summary.done,
                "failed": summary.failed,
                "elapsed": summary.elapsed,
                "records_per_second": summary.records_per_second,
                "cancelled": summary.cancelled,
            },
            durable=True,
        )
        flush_outbox(self.r, self.mq, older_than=0)
        self.ledger.release_lock(self.me)
        self._close_parser()
        self.finished = True
        log.info(
            "workload %s: %s: %d done, %d failed, %d not run in %.1fs (%.0f records/s)",
            self.id, "cancelled" if cancelled else "done", summary.done, summary.failed, summary.cancelled,
            summary.elapsed, summary.records_per_second,
        )  # fmt: skip


def record_key(payload: bytes, field: str, rid: int, lines: LineMap) -> tuple[str | None, str | None]:
    """(the record's own id, None), or (None, why the record cannot be queued): ``--id-field``
    names a field every record must have (a string or a number)."""
    try:
        value = json.loads(payload).get(field) if payload[:1] == b"{" else None
    except (ValueError, AttributeError) as exc:
        return None, f"malformed record at line {lines.line_of(rid)}: not valid JSON ({exc})"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"record {rid} has no id in field {field!r} (a string or a number; rqp pack --id-field {field})"
    return str(value), None


def _holder_dead(holder: str) -> bool:
    """A lock held by a process of this host that no longer exists (a crashed scheduler) can be
    taken over at once instead of after its TTL."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
