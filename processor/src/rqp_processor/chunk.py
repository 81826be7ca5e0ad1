"""Run one chunk: authenticate the job, lease it, process every record, commit atomically.

The records are decrypted here and handed, as one batch, to the workload's script host
(``rqp.sandbox``): the user's ``process()`` never runs in this process, which holds the keys.

Results stream to their part as the script host delivers them (``rqp.parts.PartWriter``): each
is sealed on arrival and only its record's outcome kind is kept, so a worker holds a few frames of
results (each result at most ``RQP_MAX_RESULT_BYTES``) plus the part's memory budget, never a
whole chunk of them.

Round trips per chunk, whatever its size: one to start (lease, start note, fetch all record
ciphertexts), one blob write for the results part, one to commit (statuses, done and failed
bits, retries, outbox messages), one to publish the messages (off the chunk's critical path
when the queue is remote: ``publisher``). RQ adds its own per-job
bookkeeping on top, paid once per chunk instead of once per record. Every key and script
argument is the ledger's (``rqp.ledger``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import random
import threading
import time
from dataclasses import dataclass, field, replace
from operator import itemgetter

import redis

from rqp import metrics_http as metrics
from rqp import sandbox
from rqp.backends import Backends
from rqp.chunk_records import open_records
from rqp.crypto import NONCE_SIZE, aad
from rqp.errors import (
    ForbiddenJobError,
    IntegrityError,
    KeyProviderError,
    RqpError,
    StorageError,
    WorkloadError,
)
from rqp.identity import process_identity
from rqp.jobs import ChunkSpec, open_spec
from rqp.ledger import (
    ChunkKind,
    ChunkOutcome,
    JobId,
    JobRefused,
    Lease,
    Ledger,
    PartRef,
    RetryEntry,
    Scripts,
    keyed_result,
    note_field,
    outbox_value,
    record_rejection,
)
from rqp.messages import pack_statuses
from rqp.outcome import Decision, decide
from rqp.parts import PartWriter, part_name
from rqp.status import FAILED, QUEUED, ChunkNote, StatusRecord, seal_start
from rqp.surrogates import lone_surrogate, surrogate_reason
from rqp.workload import Manifest, Workload

from .context import ContextCache
from .handback import CommitWatch
from .publisher import StatusPublisher

__all__ = ["ChunkProcessor", "JobResult", "LeaseKeeper", "backoff_delay"]

#: what a chunk's job returns to RQ (JSON): ``{"done": n, "failed": n, "retrying": n}`` when it
#: committed, else ``{"skipped": True}``, ``{"released": reason}`` or ``{"discarded": True}``
JobResult = dict[str, int | str]

log = logging.getLogger("rqp.processor")
#: outcomes decided here, before the script host sees the record (never retried)
_MISSING = -1
_TAMPERED = -2
#: what a done record keeps once its result is sealed into the part
_SEALED = (sandbox.OK, b"")


#: seconds a worker waits after handing back a chunk of a workload it cannot open
RELEASE_PAUSE = 1.0
#: why START refused a job (``rqp.ledger.JobRefused``), for the rejection log
_REFUSED = {
    "stale": "job {jid} is not the job queued for chunk {chunk} of workload {workload} (replayed, or of an earlier "
    "generation); rejected before any user code ran",
    "committed": "job {jid}: chunk {chunk} of workload {workload} has committed already (a replayed job); rejected "
    "before any user code ran",
    "finished": "job {jid} names records of workload {workload} that are already done or failed (a replayed job); "
    "rejected before any user code ran",
}


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: attempt 1 waits about ``base``, each next one twice that."""
    return min(cap, base * (2 ** (attempt - 1))) * random.uniform(0.5, 1.0)


class LeaseKeeper(threading.Thread):
    """Renews the lease of the chunk in hand, so a slow script is not mistaken for a dead worker,
    while a dead worker's lease runs out and the scheduler re-runs its chunk (at once when the
    worker's supervisor sees it die: ``rqp.ledger.release_worker``)."""

    def __init__(self, lease_seconds: float) -> None:
        super().__init__(name="rqp-lease", daemon=True)
        self.lease = lease_seconds
        #: (ledger, job id, every lease deadline this worker wrote for it)
        self.current: tuple[Ledger, str, list[float]] | None = None
        self._wake = threading.Event()

    def hold(self, ledger: Ledger, jid: str, deadline: float) -> list[float]:
        """Renew ``jid``'s lease from now on; the deadlines written for it (START's
        ``deadline``, then each renewal's), which tell this worker's lease from another's
        (``handback.CommitWatch``)."""
        deadlines = [deadline]
        self.current = (ledger, jid, deadlines)
        return deadlines

    def release(self) -> None:
        self.current = None

    def run(self) -> None:
        while not self._wake.wait(self.lease / 3):
            cur = self.current
            if cur is None:
                continue
            try:
                deadline = time.time() + self.lease
                cur[2].append(deadline)  # before the write: a lease Redis may hold is always known
                cur[0].renew(cur[1], deadline)
                metrics.LEASE_RENEWALS.inc()
            except redis.RedisError as exc:  # the next renewal retries; the lease has slack
                metrics.LEASE_RENEWAL_ERRORS.inc()
                log.warning("lease renewal for %s failed: %s", cur[1], exc)

    def stop(self) -> None:
        self._wake.set()


@dataclass
class _Tally:
    """A chunk's records sorted by their fate (the results are already in ``part``)."""

    outcome: ChunkOutcome
    part: PartWriter
    statuses: list[tuple[int, bytes]] = field(default_factory=list)
    published: list[bytes] = field(default_factory=list)
    #: the chunk's part token (``ChunkSpec.part``), in its part's name
    token: str = ""


#: versions remembered for the warm hosts (a few hundred bytes each)
MAX_HOST_VERSIONS = 1024


class ChunkProcessor:
    """Runs the chunks of one worker process on its ``Backends`` (all five clients are opened
    here, so a misconfigured worker fails at start rather than at its first job)."""

    def __init__(
        self,
        backends: Backends,
        *,
        worker_name: str | None = None,
        pool: sandbox.ScriptPool | None = None,
    ) -> None:
        self.backends = backends
        self.settings = settings = backends.settings
        # the clients the chunk path uses, held directly (one attribute lookup per use)
        self.r = backends.redis
        self.store = backends.blobs
        self.mq = backends.queue
        self.scripts = Scripts(self.r)
        self.contexts = ContextCache(self.store, backends.keys, backends.trust, lambda wid: self.ledger(wid).pin())
        self.pool = pool or sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(settings))
        #: workload id -> the version (manifest content digest) its warm script host was loaded for
        self._host_versions: dict[str, str] = {}
        #: the manifest of the last chunk run and its content digest (a manifest is immutable and
        #: held here, so the same object is the same version)
        self._last_manifest: tuple[Manifest, str] | None = None
        #: the script hosts' CPU seconds for the chunk running now (None: not measured)
        self._script_cpu: float | None = None
        self.worker = worker_name or process_identity()
        self.lease = LeaseKeeper(settings.lease_seconds)
        self.lease.start()
        #: hands back a chunk whose commit a Redis rollback lost (``handback``)
        self.commits = CommitWatch(self.r, settings.lease_seconds)
        self.commits.start()
        #: publishes committed chunks' status messages (on its own thread for a remote queue)
        self.publisher = StatusPublisher(self.r, self.mq)

    def ledger(self, workload_id: str) -> Ledger:
        return Ledger(self.r, workload_id, self.scripts)

    # ------------------------------------------------------------------ entry point
    def run(self, jid: str, workload_id: str, sealed_spec: str) -> JobResult:
        """Called by the worker for each RQ job; the only code path a job can reach."""
        opening: RqpError | None = None
        try:
            ctx = self.contexts.get(workload_id)
        except (WorkloadError, StorageError, KeyProviderError) as exc:
            if self.ledger(workload_id).exists():
                return self._release(jid, workload_id, exc)
            ctx, opening = None, exc
        except RqpError as exc:  # handled below with the rest
            ctx, opening = None, exc
        try:
            if opening is not None:
                raise opening
            assert ctx is not None
            workload = ctx.workload
            try:
                sealed = base64.b64decode(sealed_spec, validate=True)
            except (binascii.Error, ValueError):
                sealed = b""
            try:
                spec = open_spec(workload, jid, sealed)
            except ForbiddenJobError:
                fresh = self.contexts.replaced(ctx)  # the id re-packed since this worker opened it?
                if fresh is None:
                    raise
                self.pool.forget(workload_id)  # its warm script host holds the old script
                ctx, workload = fresh, fresh.workload
                spec = open_spec(workload, jid, sealed)
            parsed = JobId.parse(jid)
            if (parsed.workload, parsed.chunk) != (workload_id, spec.chunk):
                raise ForbiddenJobError(f"job {jid} carries the spec of chunk {spec.chunk}; rejected")
            self.contexts.check_pin(ctx)
            workload.check_runnable(time.time())  # a signature past its expiry runs nothing more
        except (ForbiddenJobError, WorkloadError, ValueError) as exc:
            reason = (
                exc
                if isinstance(exc, ForbiddenJobError)
                else ForbiddenJobError(
                    f"job {jid} names workload {workload_id!r}, which rqp does not know ({exc}); rejected before any user code ran"
                )
            )
            self._reject(jid, workload_id, str(reason))
            raise reason from None
        except IntegrityError as exc:
            # unsigned, untrusted, altered or replaced: nothing of it runs; say so where the
            # operator looks (the rejection log, and the workload's status)
            reason = ForbiddenJobError(f"{exc} (job {jid} rejected before any user code ran)")
            self._reject(jid, workload_id, str(reason))
            self.ledger(workload_id).set_processor_error(self.worker, str(exc))
            raise reason from None
        except RqpError as exc:
            # a real workload this processor cannot open (wrong KEK, tampered manifest):
            # say so where the scheduler and 'rqp status' look, then let RQ mark the job failed
            self.ledger(workload_id).set_processor_error(self.worker, str(exc))
            raise
        return self.process(jid, workload, spec, sealed)

    def _release(self, jid: str, workload_id: str, exc: RqpError) -> JobResult:
        """This processor cannot open a workload the scheduler runs (a wrong blob URL or KEK, an
        outage of the store): the chunk is handed back untouched, for a processor that can --
        one misconfigured VM must not fail a workload -- and the reason goes where 'rqp status'
        shows it. Logged once per workload (the context cache refuses it from memory after)."""
        first = self.ledger(workload_id).release(jid, self.worker, str(exc), time.time())
        metrics.CHUNKS_HANDED_BACK.inc()
        if first:
            log.error("cannot open workload %s, its chunks are left for other processors: %s", workload_id, exc)
        time.sleep(RELEASE_PAUSE)  # not straight back to the queue for the next chunk of it
        return {"released": str(exc)}

    def _reject(self, jid: str, workload_id: str | None, reason: str) -> None:
        record_rejection(self.r, job=jid, workload=workload_id, worker=self.worker, reason=reason)
        metrics.JOBS_REJECTED.inc()
        log.error("%s", reason)

    # ------------------------------------------------------------------ the chunk
    def process(self, jid: str, workload: Workload, spec: ChunkSpec, sealed_spec: bytes) -> JobResult:
        ledger = self.ledger(workload.id)
        records = spec.records()
        started = time.time()
        deadline = started + self.settings.lease_seconds
        try:
            lease = ledger.start(
                jid,
                spec.chunk,
                deadline=deadline,
                runs=spec.runs,
                sealed_spec=sealed_spec,
                start_note=seal_start(workload, jid, started, self.worker),
                worker=self.worker,
            )
        except JobRefused as refused:
            reason = ForbiddenJobError(_REFUSED[refused.why].format(jid=jid, chunk=spec.chunk, workload=workload.id))
            self._reject(jid, workload.id, str(reason))
            raise reason from None
        if lease is None:
            log.info("job %s is no longer pending (re-run elsewhere); skipped", jid)
            return {"skipped": True}
        deadlines = self.lease.hold(ledger, jid, deadline)
        # under the committing job's own key: a part of another attempt does not open as this one
        # in the newest form the scheduler that queued the chunk reads (an older one: per result)
        part = PartWriter(workload.scope(jid), form=spec.part_form)
        try:
            t0 = time.perf_counter()
            self._script_cpu = None  # set by ``_outcomes`` when its records ran in a script host
            outcomes, payloads = self._outcomes(workload, spec, records, lease, part)
            tally = self._tally(jid, workload, spec, records, outcomes, payloads, part, started, t0)
            return self._commit(ledger, workload, tally, deadlines)
        except (RqpError, redis.RedisError, OSError) as exc:
            # the chunk cannot commit (the blob store refuses its part, ...): give its lease back
            # now, with the reason, for the scheduler to re-run it or fail its records with that
            self.lease.release()
            try:
                ledger.abandon(jid, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, time.time())
            except redis.RedisError:
                pass  # the lease runs out instead
            raise
        finally:
            part.close()
            self.lease.release()

    def _outcomes(
        self, workload: Workload, spec: ChunkSpec, records: list[tuple[int, int]], lease: Lease, part: PartWriter
    ) -> tuple[list[tuple[int, bytes]], dict[int, bytes]]:
        """(kind, payload) per record -- decrypted here, processed by the workload's script host
        -- and the decrypted records by id. A data chunk's own records are sealed under its
        chunk's key; records kept for a retry under the data key. A result is sealed into
        ``part`` as it arrives and its record's outcome becomes ``_SEALED`` (OK, no payload);
        an error is kept, cut to ``sandbox.MAX_ERROR_BYTES`` (its host may be hostile)."""
        chunk = spec.chunk
        outcomes: list[tuple[int, bytes]] = [(_MISSING, b"")] * len(records)
        payloads: list[bytes] = []
        sent: list[int] = []  # the index in ``records`` of each payload sent
        sent_ids: list[int] = []  # and its record id
        plain: dict[int, bytes] = {}
        cts = lease.records
        seals = workload.scope(chunk) if lease.own else workload.seals
        if lease.sealed:
            # a data chunk's records as one value (``rqp.chunk_records``): one AES-GCM open for the
            # chunk, bound to the ids it holds; a value that does not open fails each record with
            # its one-line reason, never a shifted, dropped or swapped record
            try:
                ids, values = open_records(seals, lease.sealed)
            except IntegrityError as exc:
                outcomes = [(_TAMPERED, str(exc).encode())] * len(records)
                ids, values = [], []
            wanted = list(map(itemgetter(0), records))
            if ids == wanted:  # the usual chunk: the spec runs exactly the records sealed
                payloads, sent, sent_ids = values, list(range(len(ids))), ids
                plain = dict(zip(ids, values, strict=True))
            elif ids:  # a re-run of fewer records than were sealed: those, by id
                opened = dict(zip(ids, values, strict=True))
                for i, rid in enumerate(wanted):
                    payload = opened.get(rid)
                    if payload is None:
                        outcomes[i] = (
                            _MISSING,
                            b"record is not among its chunk's sealed records; re-schedule the workload",
                        )
                        continue
                    payloads.append(payload)
                    plain[rid] = payload
                    sent.append(i)
                    sent_ids.append(rid)
        # each record opened as ``seals.open_sealed("record", rid, ct)`` does, without its three
        # Python calls per record; any failure is handed to it, for its one-line reason
        decrypt = seals.sealer.aead.decrypt
        prefix = aad("record", workload.id, "")
        for i, (rid, _attempt) in enumerate(() if lease.sealed else records):
            ct = cts.get(rid)
            if ct is None:
                outcomes[i] = (
                    _MISSING,
                    b"record ciphertext is missing from Redis (deleted behind rqp's back); re-schedule the workload",
                )
                continue
            try:
                payload = decrypt(ct[:NONCE_SIZE], ct[NONCE_SIZE:], b"%b%d" % (prefix, rid))
            except Exception:  # noqa: BLE001 - InvalidTag, or too short: the reference path says which
                try:
                    payload = seals.open_sealed("record", rid, ct)
                except IntegrityError as exc:
                    outcomes[i] = (_TAMPERED, str(exc).encode())
                    continue
            payloads.append(payload)
            plain[rid] = payload
            sent.append(i)
            sent_ids.append(rid)
        if payloads:
            ctx = self.contexts.get(workload.id)
            key_of = spec.key_of()  # the data's own ids (rqp pack --id-field), else empty
            ok, cap = sandbox.OK, sandbox.MAX_ERROR_BYTES
            # records[i] for i in sent is records[j] when none was missing or tampered with
            identity = len(sent) == len(records)

            def sink(js: list[int], kinds: bytes, values: list[bytes]) -> None:
                n = len(js)
                plain_frame = not key_of and kinds.count(ok) == n
                if plain_frame:
                    joined = b"".join(values)
                    plain_frame = b"\\ud" not in joined and b"\\uD" not in joined
                if plain_frame:
                    # the usual frame: every result OK, no surrogate escape (``lone_surrogate``
                    # looks no further without one), no record keys -- sealed into the part in
                    # one pass, the outcomes set by one slice when the indices are contiguous
                    part.add_columns(list(map(sent_ids.__getitem__, js)), values)
                    if identity and n and js[-1] - js[0] + 1 == n:
                        outcomes[js[0] : js[-1] + 1] = [_SEALED] * n
                    else:
                        for j in js:
                            outcomes[sent[j]] = _SEALED
                    return
                done: list[tuple[int, bytes]] = []
                for j, kind, data in zip(js, kinds, values, strict=True):
                    i = sent[j]
                    if kind == ok:
                        rid = records[i][0]
                        lone = lone_surrogate(data)
                        if lone is not None:  # not Unicode: fails this record, never the workload's root
                            outcomes[i] = (sandbox.NOT_JSON, surrogate_reason(rid, lone).encode())
                            continue
                        done.append((rid, keyed_result(key_of[rid], data) if key_of else data))
                        outcomes[i] = _SEALED
                    else:
                        outcomes[i] = (kind, data[:cap])
                part.add(done)

            self._same_version(workload)
            self.pool.stream(workload.id, ctx.source, payloads, sink)
            self._script_cpu = self.pool.last_cpu
        return outcomes, plain

    def _same_version(self, workload: Workload) -> None:
        """The pool keeps a warm script host per workload id; a host loaded for another version of
        this id (deleted and packed anew, re-packed) is retired before it runs a record of this one."""
        manifest = workload.manifest
        last = self._last_manifest
        if last is not None and last[0] is manifest:
            digest = last[1]  # the same manifest object as the last chunk's: its digest is known
        else:
            digest = manifest.content_digest()  # (canonical JSON and SHA-256: ~0.2 ms a chunk)
            self._last_manifest = (manifest, digest)
        if self._host_versions.get(workload.id, digest) != digest:
            self.pool.forget(workload.id)
        self._host_versions[workload.id] = digest
        while len(self._host_versions) > MAX_HOST_VERSIONS:
            self._host_versions.pop(next(iter(self._host_versions)))

    def _tally(
        self,
        jid: str,
        workload: Workload,
        spec: ChunkSpec,
        records: list[tuple[int, int]],
        outcomes: list[tuple[int, bytes]],
        payloads: dict[int, bytes],
        part: PartWriter,
        started: float,
        t0: float,
    ) -> _Tally:
        """Each record's fate (``rqp.outcome.decide``) and what it writes: a done record its
        result only (already in ``part``; its status is the chunk's note); the others their
        status, a retry, their sealed record kept, a status message."""
        finished = time.time()
        data_chunk = ChunkKind.of(spec.chunk) is ChunkKind.DATA
        chunk_part = (
            PartRef("", spec.runs[0][0], spec.runs[-1][0] + spec.runs[-1][1] - 1) if data_chunk else PartRef("")
        )
        t = _Tally(ChunkOutcome(jid, spec.chunk, chunk_part, 0.0, finished, len(records)), part, token=spec.part)
        out = t.outcome
        not_done: list[int] = []
        keep: list[tuple[int, bytes]] = []
        key_of = spec.key_of()  # the data's own ids (rqp pack --id-field), else empty
        done_keys: list[str] = []
        if outcomes.count(_SEALED) == len(outcomes):
            # every record done (the usual chunk): decide() says DONE for each; no loop over them
            out.done = [rid for rid, _attempt in records]
            if key_of:
                done_keys = [key_of[rid] for rid in out.done]
            records, outcomes = [], []
        for (rid, attempt), (kind, payload) in zip(records, outcomes, strict=True):
            decision = decide(kind, attempt, spec.max_attempts)
            if decision is Decision.DONE:
                if key_of:
                    done_keys.append(key_of[rid])
                out.done.append(rid)
                continue
            not_done.append(rid)
            if data_chunk and rid in payloads:
                keep.append((rid, payloads[rid]))  # for its retry, or 'rqp retry --failed'
            error = payload.decode(errors="replace")
            if kind == sandbox.MALFORMED and data_chunk and workload.manifest.format == "jsonl":
                error = error.replace("malformed record:", f"malformed record at line {spec.line_of(rid)}:", 1)
            elif kind == sandbox.TOO_LARGE:
                error = error.replace("result is", f"result of record {rid} is", 1)
            if kind in (sandbox.TIMED_OUT, sandbox.CRASHED):
                log.warning("workload %s record %d: %s", workload.id, rid, error)
            if decision is Decision.RETRY:
                due = finished + backoff_delay(attempt, spec.backoff, spec.backoff_max)
                out.retries.append(RetryEntry(rid, attempt + 1, due))
                st = StatusRecord(
                    workload.id, rid, QUEUED, attempt, error, due, started, finished, self.worker, jid, key_of.get(rid),
                    spec.reruns,
                )  # fmt: skip
                t.statuses.append((rid, st.to_json()))
            else:
                out.failed.append(rid)
                st = StatusRecord(
                    workload.id, rid, FAILED, attempt, error, spec.queued_at, started, finished, self.worker, jid,
                    key_of.get(rid), spec.reruns,
                )  # fmt: skip
                raw = st.to_json()
                t.statuses.append((rid, raw))
                t.published.append(raw)
        out.elapsed = time.perf_counter() - t0  # the records' own time, for throughput and chunk sizes
        out.cpu = self._script_cpu  # the script hosts' CPU for them: chunk sizes when CPU-bound
        note = ChunkNote(
            spec.chunk, jid, spec.runs, tuple(not_done), spec.queued_at, started, finished, self.worker, spec.round,
            tuple(done_keys) if key_of else None, spec.part,
        )  # fmt: skip
        if out.done:
            out.note_field = note_field(spec.chunk, chunk_part.first, chunk_part.last)
            out.note = note.seal(workload)
        if not data_chunk:
            out.drop = list(out.done)  # their kept records and earlier statuses are no longer needed
        # sealed again, under the data key: a retry chunk reads them from rec, not from this chunk
        out.keep = workload.seal_packed("record", keep)
        base = replace(note.status(workload.id, 0), key=None).to_json()
        runs = [(first, count, attempt) for first, count, attempt in spec.runs] if out.done else []
        messages = pack_statuses(
            workload, self.settings.status_queue, base, runs, not_done, t.published, self.mq.max_message_bytes,
            done_keys if key_of and out.done else None,
        )  # fmt: skip
        out.messages = [(mid, outbox_value(self.settings.status_queue, body)) for mid, body in messages]
        out.statuses = workload.seal_packed("status", t.statuses)
        return t

    def _commit(self, ledger: Ledger, workload: Workload, t: _Tally, deadlines: list[float]) -> JobResult:
        out = t.outcome
        if t.part.entries:
            j = JobId.parse(out.jid)
            out.part = PartRef(part_name(workload.id, j.chunk, j.gen, t.token), out.part.first, out.part.last)
            t.part.upload(self.store, out.part.name)
        t.part.close()  # the sealed results are stored: nothing of them is held past here
        out.finished_at = time.time()
        if not ledger.commit(out, self.worker):
            # the scheduler re-ran this chunk elsewhere while we were slow: that run's commit counts
            self._discard_part(ledger, out)
            log.warning("job %s lost its lease before commit; its results were discarded (the re-run counts)", out.jid)
            metrics.CHUNKS_LEASE_LOST.inc()
            return {"discarded": True}
        self.commits.committed(ledger, out.jid, deadlines)
        metrics.RECORDS_DONE.labels(workload.id).inc(len(out.done))
        metrics.RECORDS_FAILED.labels(workload.id).inc(len(out.failed))
        metrics.RECORDS_RETRIED.labels(workload.id).inc(len(out.retries))
        if out.messages:
            # committed with the statuses, so delivered even if this worker dies now; on a remote
            # queue published off this chunk's critical path (``publisher``)
            self.publisher.publish([mid for mid, _ in out.messages])
        return {"done": len(out.done), "failed": len(out.failed), "retrying": len(out.retries)}

    def _discard_part(self, ledger: Ledger, out: ChunkOutcome) -> None:
        """Delete the part of a commit that did not count -- unless another run of the same job
        uses that name: after a Redis rollback RQ can hand one job to two workers (its dequeue
        was lost), and the other one's commit, done or to come, names this very blob."""
        if not out.part.name:
            return
        try:
            named = ledger.part_of(out.chunk)
            shared = ledger.lease(out.jid) is not None or (named is not None and named.name == out.part.name)
        except (redis.RedisError, ValueError):
            shared = True  # unknown: an orphaned part costs storage, a deleted committed one a result
        if not shared:
            self.store.delete(out.part.name)
