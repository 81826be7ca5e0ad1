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
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import redis
from rq import Queue, Worker
from rqp import sandbox
from rqp.config import Settings
from rqp.errors import ForbiddenJobError, RqpError, ScriptError, StorageUnavailableError, WorkloadError
from rqp.jobs import ENTRY_POINT, JOB_TIMEOUT, ChunkSpec, JSONSerializer, RqpJob, open_spec, runs_of, seal_spec
from rqp.keys import KeyProvider
from rqp.layout import PIN_FIELD, WORKLOADS, WorkloadKeys, job_id, pin_value, read_pin
from rqp.lua import Scripts, pack_values
from rqp.messages import flush_outbox, make_envelope, outbox_add, pack_messages, publish_outbox
from rqp.records import parse_records
from rqp.signing import TrustStore
from rqp.status import FAILED, StatusRecord, read_progress
from rqp.storage import BlobStore, MessageQueue
from rqp.workload import Workload

from .consolidate import consolidate

__all__ = ["DONE_STATE", "FAILED_STATE", "LOCK_SECONDS", "RUNNING", "WorkloadRun"]

log = logging.getLogger("rqp.scheduler")

RUNNING = "running"
CONSOLIDATING = "consolidating"
DONE_STATE = "done"
FAILED_STATE = "failed"
LOCK_SECONDS = 30
RECLAIM_INTERVAL = 1.0
RQ_CHECK_INTERVAL = 5.0
OUTBOX_INTERVAL = 5.0
PROGRESS_INTERVAL = 2.0
#: records per enqueue transaction: several chunks share one MULTI and one cursor check
ENQUEUE_BATCH_RECORDS = 4096
INF = float("inf")
_WRITER: ThreadPoolExecutor | None = None


def _writer() -> ThreadPoolExecutor:
    """One thread that sends enqueue transactions, so sealing the next batch overlaps Redis
    applying the last (the socket wait releases the GIL). Shared by every workload: each waits
    for its own write before it returns from ``step``."""
    global _WRITER
    if _WRITER is None:
        _WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rqp-enqueue")
    return _WRITER


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
    ) -> None:
        self.settings = settings
        self.r = r
        self.store = store
        self.mq = mq
        self.k = WorkloadKeys(workload_id)
        self.id = workload_id
        self.me = f"{socket.gethostname()}:{os.getpid()}"
        self.scripts = Scripts(r)
        self.queue = Queue(settings.rq_queue, connection=r, job_class=RqpJob, serializer=JSONSerializer)
        self.hosts = hosts or sandbox.HostFactory(sandbox.SandboxConfig.from_settings(settings), warm=False)
        # the submitter's signature is checked here, before any key is unwrapped or byte decrypted
        self.workload = Workload.open(store, keys, workload_id, trust)
        self.records: Iterator[tuple[bytes, str | None]] | None = None
        self._parser: Any = None
        self.exhausted = False
        self.finished = False
        self.chunk_size = settings.chunk_size
        self._last = {"reclaim": 0.0, "rq": 0.0, "outbox": 0.0, "progress": 0.0, "lock": 0.0}
        self._workers_seen = 0
        self._needs_reopen = False
        self._source: bytes | None = None
        self._bytes_enqueued = 0
        self._records_enqueued = 0
        self._cursor = 0
        self._chunks = 0
        self._unqueued: set[str] = set()

    # ------------------------------------------------------------------ start / resume
    def start(self) -> WorkloadRun:
        self._take_lock()
        meta = self._meta()
        if meta.get("state") == DONE_STATE:
            self.finished = True
            self._release_lock()
            return self
        if meta:
            try:
                # the workload that was started is the one that resumes: a replaced one is refused
                self.workload.check_pin(read_pin(self.r, self.id))
            except RqpError:
                self._release_lock()
                raise
        source = self.workload.script_source()
        try:
            # the script's import and setup() run in a script host, never in this process
            sandbox.check_script(self.hosts, self.id, source)
        except ScriptError as exc:
            self._fail_workload(str(exc))
            raise
        now = time.time()
        if not meta:
            pipe = self.r.pipeline()
            pipe.hset(
                self.k.meta,
                mapping={
                    "state": RUNNING,
                    "started_at": now,
                    "enqueued": 0,
                    "chunks": 0,
                    "retry_seq": 0,
                    "format": self.workload.manifest.format,
                    "scheduler": self.me,
                    "max_attempts": self.settings.max_attempts,
                    PIN_FIELD: pin_value(self.workload.seal_pin()),
                    "signer": self.workload.signer,
                },
            )
            pipe.zadd(WORKLOADS, {self.id: now})
            pipe.execute()
            self._event(
                "started",
                {"format": self.workload.manifest.format, "data_bytes": self.workload.manifest.data.plain_size},
            )
            log.info("workload %s: started", self.id)
        else:
            self.r.hset(self.k.meta, mapping={"state": RUNNING, "scheduler": self.me})
            self.r.hdel(self.k.meta, "finished_at", "error")
            log.info("workload %s: resuming after %s records", self.id, meta.get("enqueued", 0))
        self._source = source
        self._open_records()
        return self

    def _open_records(self) -> None:
        """(Re)position the record stream at the committed cursor: after a restart, or after a
        Redis error left it unknown whether the last chunk was enqueued."""
        meta = self._meta()
        self.exhausted = "total" in meta
        self.records = None
        self._close_parser()
        self._cursor = int(meta.get("enqueued", 0))
        self._chunks = int(meta.get("chunks", 0))
        if not self.exhausted:
            m = self.workload.manifest
            if m.format == "script":
                # the script's parse() runs in a script host of its own, fed the decrypted data
                assert self._source is not None
                recs = self._parser = sandbox.parse_records(
                    self.hosts, self.id, self._source, self.workload.data_chunks()
                )
            else:
                recs = parse_records(m.format, self.workload.data_chunks(), workload_id=self.id, delimiter=m.delimiter)
            self.records = islice(recs, int(meta.get("enqueued", 0)), None)

    def _close_parser(self) -> None:
        if self._parser is not None:
            self._parser.close()  # ends its script host
            self._parser = None

    def reset_after_error(self) -> None:
        self.records = None
        self._close_parser()
        self._needs_reopen = True

    def _meta(self) -> dict[str, str]:
        return {a.decode(): b.decode() for a, b in self.r.hgetall(self.k.meta).items()}

    def _take_lock(self) -> None:
        if self.r.set(self.k.lock, self.me, nx=True, ex=LOCK_SECONDS):
            return
        holder = self.r.get(self.k.lock)
        if holder is not None and holder.decode() != self.me and not _holder_dead(holder.decode()):
            raise WorkloadError(
                f"workload {self.id} is already being scheduled by {holder.decode()}; wait for it, or stop it and retry in {LOCK_SECONDS}s"
            )
        self.r.set(self.k.lock, self.me, ex=LOCK_SECONDS)

    def _renew_lock(self) -> None:
        if self.r.set(self.k.lock, self.me, xx=True, ex=LOCK_SECONDS, get=True) not in (None, self.me.encode()):
            raise WorkloadError(
                f"workload {self.id}: another scheduler took over its lock; this one stops supervising it"
            )

    def _release_lock(self) -> None:
        if self.r.get(self.k.lock) == self.me.encode():
            self.r.delete(self.k.lock)

    # ------------------------------------------------------------------ one step
    def step(self) -> bool:
        """Advance; True once the workload is finished (summary written)."""
        if self.finished:
            return True
        if self._needs_reopen:
            self._open_records()
            self._needs_reopen = False
        now = time.monotonic()
        if now - self._last["lock"] > LOCK_SECONDS / 3:
            self._renew_lock()
            self._last["lock"] = now
        try:
            self._fill_window()
        except ScriptError as exc:  # the script's parse() failed: the workload cannot be read
            self._fail_workload(str(exc))
            self._close_parser()
            raise
        self._due_retries()
        if now - self._last["reclaim"] > RECLAIM_INTERVAL:
            self._reclaim_expired()
            self._last["reclaim"] = now
        if now - self._last["rq"] > RQ_CHECK_INTERVAL:
            self._reclaim_lost()
            self._last["rq"] = now
        if now - self._last["outbox"] > OUTBOX_INTERVAL:
            flush_outbox(self.r, self.mq)
            self._last["outbox"] = now
        if now - self._last["progress"] > PROGRESS_INTERVAL:
            self._progress_event()
            self._last["progress"] = now
        if self.exhausted and self._idle() and self._cursor_intact():
            try:
                self._finish()
            except StorageUnavailableError as exc:
                log.warning("workload %s: cannot write results yet (%s); will retry", self.id, exc)
                return False
            return True
        return False

    def wait_hint(self) -> float:
        """How long the loop may block before stepping again."""
        return 0.02 if not self.exhausted else 0.1

    def _cursor_intact(self) -> bool:
        """Before finishing: Redis still holds the whole enqueue (a restart may have lost the last
        chunks and the total); if not, re-read the data from where Redis says it stopped."""
        total, enqueued = self.r.hmget(self.k.meta, "total", "enqueued")
        if total is not None and int(enqueued or 0) == int(total):
            return True
        log.warning(
            "workload %s: Redis lost part of the enqueue (enqueued=%s, total=%s); re-reading", self.id, enqueued, total
        )
        self._open_records()
        return False

    def _idle(self) -> bool:
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(self.k.pending)
        pipe.zcard(self.k.retry)
        pending, retry = pipe.execute()
        return pending == 0 and retry == 0

    # ------------------------------------------------------------------ enqueue
    def _window(self) -> int:
        if self.settings.window_chunks:
            return self.settings.window_chunks
        if time.monotonic() - self._last.get("workers", 0.0) > 5:
            self._workers_seen = Worker.count(connection=self.r, queue=self.queue)
            self._last["workers"] = time.monotonic()
        return max(16, 4 * self._workers_seen)

    def _adapt_chunk_size(self) -> None:
        if not self.settings.adaptive_chunks:
            return
        perf = self.r.hmget(self.k.perf, "records", "seconds")
        if not perf[0] or not perf[1]:
            return
        per_record = float(perf[1]) / max(1, int(perf[0]))
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
        in_flight = self.r.zcard(self.k.pending)
        window = self._window()
        if in_flight >= window:
            return
        self._adapt_chunk_size()
        budget = window - in_flight
        writing: Future[Any] | None = None
        try:
            while budget > 0 and not self.exhausted:
                chunks: list[list[tuple[bytes, str | None]]] = []
                for _ in range(min(budget, max(1, ENQUEUE_BATCH_RECORDS // self.chunk_size))):
                    batch = list(islice(self.records, self.chunk_size))
                    if len(batch) < self.chunk_size:
                        self.exhausted = True
                    if batch or self.exhausted:
                        chunks.append(batch)
                    if self.exhausted:
                        break
                budget -= max(1, len(chunks))
                pipe, records, chunk_count = self._prepare_chunks(chunks)
                if writing is not None:
                    writing, done = None, writing
                    done.result()
                if not self._cursor_matches():
                    return
                writing = _writer().submit(pipe.execute)
                self._cursor += records
                self._chunks += chunk_count
                self._records_enqueued += records
        finally:
            if writing is not None:
                writing.result()

    def _cursor_matches(self) -> bool:
        """Redis still holds every chunk this scheduler queued (a restart without a synced AOF
        can lose the last writes); if not, go back to what it has."""
        enqueued, chunks = self.r.hmget(self.k.meta, "enqueued", "chunks")
        if int(enqueued or 0) == self._cursor and int(chunks or 0) == self._chunks:
            return True
        log.warning(
            "workload %s: Redis cursor is %s, expected %d; re-reading from there", self.id, enqueued, self._cursor
        )
        self._open_records()
        return False

    def _prepare_chunks(self, chunks: list[list[tuple[bytes, str | None]]]) -> tuple[Any, int, int]:
        """One transaction that queues ``chunks`` from the cursor on: the sealed records, a sealed
        spec and an RQ job per chunk, failed statuses for malformed records, and the cursor.
        A record's "queued" state is not written: no status record, an id below the cursor and
        neither bit set means queued (``rqp.status.record_status``), which halves what the
        enqueue encrypts and writes."""
        now = time.time()
        w = self.workload
        rid = self._cursor
        chunk_no = self._chunks
        good: list[tuple[int, bytes]] = []
        statuses: list[tuple[int, bytes]] = []
        published: list[bytes] = []
        malformed: list[int] = []
        specs: list[ChunkSpec] = []
        for batch in chunks:
            if not batch:
                continue
            ids: list[tuple[int, int]] = []
            for payload, error in batch:
                if error is not None:
                    raw = StatusRecord(self.id, rid, FAILED, 0, error, now, None, now, self.me, None).to_json()
                    statuses.append((rid, w.seal("status", rid, raw)))
                    published.append(raw)
                    malformed.append(rid)
                else:
                    good.append((rid, payload))
                    ids.append((rid, 1))
                    self._bytes_enqueued += len(payload) + 1
                rid += 1
            if ids:
                specs.append(
                    ChunkSpec(
                        self.id,
                        f"c{chunk_no:08d}",
                        runs_of(ids),
                        self.settings.max_attempts,
                        self.settings.retry_backoff,
                        self.settings.retry_backoff_max,
                        now,
                    )
                )
            chunk_no += 1
        pipe = self.r.pipeline(transaction=True)
        self._queue_specs(pipe, specs, 0)
        if good or statuses:
            self.scripts.put(
                keys=[self.k.rec, self.k.st], args=[w.seal_packed("record", good), pack_values(statuses)], client=pipe
            )
        for bad in malformed:
            pipe.setbit(self.k.failed, bad, 1)
        if published:
            outbox_add(
                pipe, self.settings.status_queue, pack_messages(w, "status", published, self.mq.max_message_bytes), now
            )
        records = rid - self._cursor
        pipe.hincrby(self.k.meta, "enqueued", records)
        pipe.hincrby(self.k.meta, "chunks", chunk_no - self._chunks)
        if self.exhausted:
            pipe.hset(self.k.meta, "total", rid)
        return pipe, records, chunk_no - self._chunks

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
                    failure_ttl=7 * 86400,
                    description=f"rqp {self.id} {spec.chunk} ({spec.size} records)",
                )
            )
        pipe.hset(self.k.spec, mapping=sealed)  # type: ignore[arg-type]
        pipe.zadd(self.k.pending, dict.fromkeys(sealed, INF))
        self.queue.enqueue_many(jobs, pipeline=pipe)

    # ------------------------------------------------------------------ retries
    def _due_retries(self) -> None:
        due = self.r.zrangebyscore(self.k.retry, "-inf", time.time(), start=0, num=self.settings.chunk_max)
        if not due:
            return
        records = []
        for member in due:
            rid, att = member.decode().split(":")
            records.append((int(rid), int(att)))
        seq = self.r.hincrby(self.k.meta, "retry_seq", 1)
        spec = ChunkSpec(
            self.id,
            f"r{seq:08d}",
            runs_of(records),
            self.settings.max_attempts,
            self.settings.retry_backoff,
            self.settings.retry_backoff_max,
            time.time(),
        )
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(self.k.retry, *due)
        self._queue_specs(pipe, [spec], 0)
        pipe.execute()
        log.info("workload %s: retrying %d records", self.id, len(records))

    # ------------------------------------------------------------------ reclaim
    def _reclaim_expired(self) -> None:
        for jid in self.r.zrangebyscore(self.k.pending, "-inf", time.time()):
            self._reclaim(jid.decode(), "its worker stopped renewing the chunk lease (worker died or hung)")

    def _reclaim_lost(self) -> None:
        """Queued chunks whose RQ job failed, vanished, started on a worker that died before
        taking the lease, or says "queued" while sitting in no queue (a Redis restart can lose
        the write that would have moved it on); the last must be seen twice to count."""
        queued = [j.decode() for j in self.r.zrangebyscore(self.k.pending, INF, INF)]
        if not queued:
            self._unqueued.clear()
            return
        pipe = self.r.pipeline(transaction=False)
        for jid in queued:
            pipe.hmget(f"rq:job:{jid}", "status", "started_at", "exc_info")
        states = pipe.execute()
        in_queue = set(self.queue.get_job_ids()) if any(st[0] == b"queued" for st in states) else set()
        horizon = time.time() - self.settings.lease_seconds
        unqueued = set()
        for jid, (status, started_at, exc_info) in zip(queued, states):
            status = status.decode() if status else None
            if status in ("deferred", "scheduled"):
                continue
            if status == "queued":
                if jid in in_queue:
                    continue
                unqueued.add(jid)
                if jid not in self._unqueued:
                    continue  # maybe between RQ's dequeue and its status update: look again later
            if status == "started" and started_at and _rq_time(started_at) > horizon:
                continue
            if status is None and self.r.zscore(self.k.pending, jid) != INF:
                continue  # committed (result_ttl=0 deleted the job) or leased meanwhile
            reason = (
                self._rq_failure_reason(status, exc_info)
                if status != "queued"
                else "its RQ job was lost from the queue (Redis restart?)"
            )
            self._reclaim(jid, reason)
        self._unqueued = unqueued

    def _rq_failure_reason(self, status: str | None, exc_info: bytes | None) -> str:
        err = self.r.hget(self.k.meta, "processor_error")
        if err:
            return err.decode()
        if exc_info:
            try:
                text = zlib.decompress(exc_info).decode(errors="replace")
            except zlib.error:
                text = exc_info.decode(errors="replace")
            lines = [ln for ln in text.strip().splitlines() if ln.strip()]
            if lines:
                return lines[-1].strip()
        return f"its RQ job was {status or 'lost from Redis'}"

    def _reclaim(self, jid: str, reason: str) -> None:
        sealed = self.scripts.reclaim(keys=[self.k.pending, self.k.n, self.k.spec], args=[jid])
        if sealed is None:
            return  # it committed first
        try:
            spec = open_spec(self.workload, jid, sealed)
        except ForbiddenJobError as exc:
            log.error("workload %s: cannot reclaim %s: %s", self.id, jid, exc)
            return
        pipe = self.r.pipeline(transaction=False)
        for rid, _ in spec.records():
            pipe.getbit(self.k.done, rid)
        done_bits = pipe.execute()
        todo = [(rid, att + 1) for (rid, att), bit in zip(spec.records(), done_bits) if not bit]
        again = [(rid, att) for rid, att in todo if att <= spec.max_attempts]
        give_up = [(rid, att - 1) for rid, att in todo if att > spec.max_attempts]
        now = time.time()
        pipe = self.r.pipeline(transaction=True)
        gen = int(jid.rsplit("-", 1)[1]) + 1
        if again:
            self._queue_specs(
                pipe,
                [
                    ChunkSpec(
                        self.id, spec.chunk, runs_of(again), spec.max_attempts, spec.backoff, spec.backoff_max, now
                    )
                ],
                gen,
            )
        if give_up:
            published = []
            for rid, att in give_up:
                st = StatusRecord(
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
                )
                raw = st.to_json()
                pipe.hset(self.k.st, rid, self.workload.seal("status", rid, raw))
                pipe.setbit(self.k.failed, rid, 1)
                published.append(raw)
            outbox_add(
                pipe,
                self.settings.status_queue,
                pack_messages(self.workload, "status", published, self.mq.max_message_bytes),
                now,
            )
        pipe.hincrby(self.k.meta, "reclaimed", 1)
        pipe.execute()
        log.warning(
            "workload %s: chunk %s re-queued (%d records) or failed (%d): %s",
            self.id,
            spec.chunk,
            len(again),
            len(give_up),
            reason,
        )

    # ------------------------------------------------------------------ events and finish
    def _event(self, kind: str, data: dict[str, Any], durable: bool = False) -> None:
        payload = {"event": kind, "workload": self.id, "at": time.time(), **data}
        message = make_envelope(self.workload, "event", payload)
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

    def _fail_workload(self, error: str) -> None:
        # the message may quote the user's script or data: only its sealed form goes to Redis
        self.r.hset(
            self.k.meta,
            mapping={
                "state": FAILED_STATE,
                "finished_at": time.time(),
                "error": "the workload's script failed to load (details are encrypted: run 'rqp status' with the KEK, or see the scheduler's log)",
                "error_sealed": base64.b64encode(self.workload.seal("error", "", error.encode())).decode(),
            },
        )
        self.r.zadd(WORKLOADS, {self.id: time.time()}, nx=True)
        self._event("failed", {"error": error}, durable=True)
        self._release_lock()

    def _finish(self) -> None:
        self.r.hset(self.k.meta, "state", CONSOLIDATING)
        summary = consolidate(self.r, self.store, self.workload, keep_parts=self.settings.keep_parts)
        ttl = self.settings.status_ttl_days * 86400
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self.k.meta,
            mapping={
                "state": DONE_STATE,
                "finished_at": summary["finished_at"],
                "results_sha256": summary["results"]["sha256"],
            },
        )
        pipe.delete(self.k.spec, self.k.parts, self.k.retry, self.k.pending)
        if not summary["failed"]:
            pipe.delete(self.k.rec)
        for key in (self.k.meta, self.k.st, self.k.done, self.k.failed, self.k.n, self.k.perf, self.k.rec):
            pipe.expire(key, ttl)
        pipe.execute()
        self._event(
            "done", {k: summary[k] for k in ("total", "done", "failed", "elapsed", "records_per_second")}, durable=True
        )
        flush_outbox(self.r, self.mq, older_than=0)
        self._release_lock()
        self._close_parser()
        self.finished = True
        log.info(
            "workload %s: done: %d done, %d failed in %.1fs (%.0f records/s)",
            self.id,
            summary["done"],
            summary["failed"],
            summary["elapsed"],
            summary["records_per_second"],
        )


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


def _rq_time(raw: bytes) -> float:
    text = raw.decode()
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return 0.0
