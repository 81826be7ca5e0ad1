"""Run one chunk: authenticate the job, lease it, process every record, commit atomically.

The records are decrypted here and handed, as one batch, to the workload's script host
(``rqp.sandbox``): the user's ``process()`` never runs in this process, which holds the keys.

Round trips per chunk, whatever its size: one to start (lease + "processing" statuses + fetch
all record ciphertexts), one blob write for the results part, one to commit (statuses, done
and failed bits, retries, outbox messages), one to publish the messages. RQ adds its own
per-job bookkeeping on top, paid once per chunk instead of once per record.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from typing import Any

import redis
from rqp import sandbox
from rqp.config import Settings
from rqp.errors import ForbiddenJobError, IntegrityError, RqpError, WorkloadError
from rqp.jobs import ChunkSpec, open_spec
from rqp.keys import KeyProvider
from rqp.layout import OUTBOX, OUTBOX_TIMES, REJECTED, WorkloadKeys, held_key, parse_job_id, read_pin
from rqp.lua import Scripts, join_ids
from rqp.messages import outbox_value, pack_statuses, publish_outbox
from rqp.parts import part_blob, seal_part
from rqp.signing import TrustStore
from rqp.status import DONE, FAILED, QUEUED, StatusRecord, seal_start
from rqp.storage import BlobStore, MessageQueue

from .context import ContextCache

__all__ = ["ChunkProcessor", "LeaseKeeper", "backoff_delay"]

log = logging.getLogger("rqp.processor")
REJECTED_KEEP = 1000
#: outcomes decided here, before the script host sees the record
_MISSING = -1
_TAMPERED = -2


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: attempt 1 waits about ``base``, each next one twice that."""
    return min(cap, base * (2 ** (attempt - 1))) * random.uniform(0.5, 1.0)


class LeaseKeeper(threading.Thread):
    """Renews the lease of the chunk in hand, so a slow script is not mistaken for a dead worker,
    while a dead worker's lease runs out and the scheduler re-runs its chunk (at once when the
    worker's supervisor sees it die: ``rqp_processor.cli.release_dead_worker``)."""

    def __init__(self, client: redis.Redis, lease_seconds: float) -> None:
        super().__init__(name="rqp-lease", daemon=True)
        self.client = client
        self.lease = lease_seconds
        self.current: tuple[str, str] | None = None
        self._wake = threading.Event()

    def hold(self, pending_key: str, jid: str) -> None:
        self.current = (pending_key, jid)

    def release(self) -> None:
        self.current = None

    def run(self) -> None:
        while not self._wake.wait(self.lease / 3):
            cur = self.current
            if cur is None:
                continue
            try:
                self.client.zadd(cur[0], {cur[1]: time.time() + self.lease}, xx=True)
            except redis.RedisError as exc:  # the next renewal retries; the lease has slack
                log.warning("lease renewal for %s failed: %s", cur[1], exc)

    def stop(self) -> None:
        self._wake.set()


class ChunkProcessor:
    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        store: BlobStore,
        mq: MessageQueue,
        keys: KeyProvider,
        trust: TrustStore,
        worker_name: str | None = None,
        pool: sandbox.ScriptPool | None = None,
    ) -> None:
        self.settings = settings
        self.r = client
        self.store = store
        self.mq = mq
        self.scripts = Scripts(client)
        self.contexts = ContextCache(store, keys, trust, lambda wid: read_pin(client, wid))
        self.pool = pool or sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(settings))
        self.worker = worker_name or f"{socket.gethostname()}:{os.getpid()}"
        self.lease = LeaseKeeper(client, settings.lease_seconds)
        self.lease.start()

    # ------------------------------------------------------------------ entry point
    def run(self, jid: str, workload_id: str, sealed_spec: str) -> dict[str, Any]:
        """Called by the worker for each RQ job; the only code path a job can reach."""
        try:
            ctx = self.contexts.get(workload_id)
            workload = ctx.workload
            spec = open_spec(workload, jid, sealed_spec)
            if parse_job_id(jid)[:2] != (workload_id, spec.chunk):
                raise ForbiddenJobError(f"job {jid} carries the spec of chunk {spec.chunk}; rejected")
            self.contexts.check_pin(ctx)
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
            self.r.hset(WorkloadKeys(workload_id).meta, "processor_error", f"{self.worker}: {exc}")
            raise reason from None
        except RqpError as exc:
            # a real workload this processor cannot open (wrong KEK, tampered manifest):
            # say so where the scheduler and 'rqp status' look, then let RQ mark the job failed
            self.r.hset(WorkloadKeys(workload_id).meta, "processor_error", f"{self.worker}: {exc}")
            raise
        return self.process(jid, workload, spec)

    def _reject(self, jid: str, workload_id: str, reason: str) -> None:
        entry = json.dumps(
            {"job": jid, "workload": workload_id, "worker": self.worker, "at": time.time(), "reason": reason}
        )
        pipe = self.r.pipeline(transaction=False)
        pipe.lpush(REJECTED, entry)
        pipe.ltrim(REJECTED, 0, REJECTED_KEEP - 1)
        pipe.execute()
        log.error("%s", reason)

    # ------------------------------------------------------------------ the chunk
    def process(self, jid: str, workload: Any, spec: ChunkSpec) -> dict[str, Any]:
        k = WorkloadKeys(workload.id)
        records = spec.records()
        rids = [rid for rid, _ in records]
        started = time.time()
        cts = self.scripts.start(
            keys=[k.pending, k.n, k.rec, held_key(self.worker)],
            args=[
                jid,
                started + self.settings.lease_seconds,
                len(rids),
                join_ids(rids),
                seal_start(workload, jid, started, self.worker),
            ],
        )
        if cts is None:
            log.info("job %s is no longer pending (re-run elsewhere); skipped", jid)
            return {"skipped": True}
        self.lease.hold(k.pending, jid)
        try:
            outcome = self._run_records(jid, workload, spec, records, cts, started)
        finally:
            self.lease.release()
        return outcome

    def _outcomes(
        self, workload: Any, records: list[tuple[int, int]], cts: list[bytes | None]
    ) -> list[tuple[int, bytes]]:
        """(kind, payload) per record: decrypted here, processed by the workload's script host."""
        outcomes: list[tuple[int, bytes]] = [(_MISSING, b"")] * len(records)
        payloads: list[bytes] = []
        sent: list[int] = []
        for i, ((rid, _attempt), ct) in enumerate(zip(records, cts)):
            if ct is None:
                outcomes[i] = (
                    _MISSING,
                    b"record ciphertext is missing from Redis (deleted behind rqp's back); re-schedule the workload",
                )
                continue
            try:
                payloads.append(workload.open_sealed("record", rid, ct))
            except IntegrityError as exc:
                outcomes[i] = (_TAMPERED, str(exc).encode())
                continue
            sent.append(i)
        if payloads:
            ctx = self.contexts.get(workload.id)
            for i, outcome in zip(sent, self.pool.run(workload.id, ctx.source, payloads)):
                outcomes[i] = outcome
        return outcomes

    def _run_records(
        self,
        jid: str,
        workload: Any,
        spec: ChunkSpec,
        records: list[tuple[int, int]],
        cts: list[bytes | None],
        started: float,
    ) -> dict[str, Any]:
        done_fmt = StatusRecord.formatter(workload.id, DONE, spec.queued_at, started, self.worker, jid)
        # done records go to the status queue as [id, attempts, finished_at] rows beside one
        # base record (rqp.messages.pack_statuses); the others as full records
        done_rows: list[bytes] = []
        # plaintexts here; sealed in bulk (one nonce draw, one pass) once the loop is over
        results: list[tuple[int, bytes]] = []
        statuses: list[tuple[int, bytes]] = []
        done: list[int] = []
        failed: list[int] = []
        retries: list[str] = []
        published: list[bytes] = []
        t0 = time.perf_counter()
        outcomes = self._outcomes(workload, records, cts)
        finished = time.time()
        for (rid, attempt), (kind, payload) in zip(records, outcomes):
            if kind == sandbox.OK:
                results.append((rid, payload))
                done.append(rid)
                statuses.append((rid, done_fmt(rid, attempt, finished)))
                done_rows.append(b"[%d,%d,%r]" % (rid, attempt, finished))
                continue
            error = payload.decode(errors="replace")
            if kind in (sandbox.TIMED_OUT, sandbox.CRASHED):
                log.warning("workload %s record %d: %s", workload.id, rid, error)
            if kind in sandbox.RETRYABLE and attempt < spec.max_attempts:
                due = finished + backoff_delay(attempt, spec.backoff, spec.backoff_max)
                retries.append(f"{rid}:{attempt + 1}={due:.3f}")
                st = StatusRecord(workload.id, rid, QUEUED, attempt, error, due, started, finished, self.worker, jid)
                statuses.append((rid, st.to_json()))
            else:
                failed.append(rid)
                st = StatusRecord(
                    workload.id, rid, FAILED, attempt, error, spec.queued_at, started, finished, self.worker, jid
                )
                raw = st.to_json()
                statuses.append((rid, raw))
                published.append(raw)
        elapsed = time.perf_counter() - t0
        part_name = ""
        if results:
            _w, chunk, gen = parse_job_id(jid)
            part_name = part_blob(workload.id, f"{chunk}-{gen}")
            self.store.put(part_name, seal_part(workload, results))
        first, last = (
            (spec.runs[0][0], spec.runs[-1][0] + spec.runs[-1][1] - 1) if spec.chunk.startswith("c") else (-1, -1)
        )
        messages = pack_statuses(workload, done_fmt(0, 0, None), done_rows, published, self.mq.max_message_bytes)
        k = WorkloadKeys(workload.id)
        committed = self.scripts.commit(
            keys=[
                k.pending,
                k.n,
                k.rec,
                k.st,
                k.done,
                k.failed,
                k.retry,
                k.parts,
                k.perf,
                k.spec,
                OUTBOX,
                OUTBOX_TIMES,
                held_key(self.worker),
            ],
            args=[
                jid,
                spec.chunk,
                f"{part_name}|{first}|{last}",
                elapsed,
                time.time(),
                len(records),
                workload.seal_packed("status", statuses),
                join_ids(done),
                join_ids(failed),
                ",".join(retries),
                *[x for mid, body in messages for x in (mid, outbox_value(self.settings.status_queue, body))],
            ],
        )
        if not committed:
            # the scheduler re-ran this chunk elsewhere while we were slow: that run's commit counts
            if part_name:
                self.store.delete(part_name)
            log.warning("job %s lost its lease before commit; its results were discarded (the re-run counts)", jid)
            return {"discarded": True}
        if messages:
            try:
                publish_outbox(self.r, self.mq, [mid for mid, _ in messages])
            except (RqpError, redis.RedisError) as exc:  # left in the outbox; the scheduler publishes it later
                log.warning("status messages for %s stay in the outbox: %s", jid, exc)
        return {"done": len(done), "failed": len(failed), "retrying": len(retries)}
