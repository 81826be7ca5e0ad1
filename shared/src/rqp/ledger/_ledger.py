"""One workload's state in Redis, behind typed methods: the only code that names its keys,
spells its values or calls its scripts.

The pending zset is the single source of truth for "this job may still commit": ``start`` and
``commit`` succeed only while the job id is in it, and ``reclaim`` removes it. Whichever of a
slow worker's commit and the scheduler's reclaim runs first wins; the other sees the job gone and
does nothing. That is what makes every record's result count exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from ._codecs import (
    Counters,
    Meta,
    PartRef,
    Perf,
    RetryEntry,
    State,
    decode_pin,
    encode_pin,
    join_ids,
    join_runs,
    parse_note_field,
    raw,
    text,
    unpack_values,
)
from ._keys import OUTBOX, OUTBOX_TIMES, WORKLOADS, WorkloadKeys, held_key
from ._scripts import Scripts

__all__ = ["INF", "ChunkOutcome", "Lease", "Ledger", "LockHeld"]

INF = float("inf")


@dataclass
class ChunkOutcome:
    """What a chunk's run produced, committed as one: statuses, bits, retries, messages."""

    jid: str
    chunk: str
    part: PartRef
    #: seconds the records took (for throughput and adaptive chunk sizes)
    elapsed: float
    finished_at: float
    processed: int
    #: sealed status records of the records not done, packed (``Workload.seal_packed``)
    statuses: bytes = b""
    #: sorted ids of the records done
    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retries: list[RetryEntry] = field(default_factory=list)
    #: sealed records not done, packed, kept for their retry (a data chunk's records go with it)
    keep: bytes = b""
    #: ids done in a retry chunk, whose kept records are no longer needed
    drop: list[int] = field(default_factory=list)
    #: the chunk's note (``rqp.status.ChunkNote``, sealed) and its field
    note_field: str = ""
    note: bytes = b""
    #: (message id, outbox value) for the status queue
    messages: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Lease:
    """What ``start`` hands a worker: the chunk's sealed records, by id."""

    records: dict[int, bytes]
    #: the chunk had its own records (a data chunk): those not done must be kept at commit
    own: bool


class LockHeld(Exception):
    """Another scheduler holds the workload's lock; ``holder`` says which."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def _decode(d: Mapping[Any, Any]) -> dict[str, str]:
    return {str(text(a)): str(text(b)) for a, b in d.items()}


class Ledger:
    """The state of workload ``workload_id`` in Redis."""

    def __init__(self, r: redis.Redis, workload_id: str, scripts: Scripts | None = None) -> None:
        self.r = r
        self.id = workload_id
        self.k = WorkloadKeys(workload_id)
        self._scripts = scripts

    @property
    def scripts(self) -> Scripts:
        if self._scripts is None:
            self._scripts = Scripts(self.r)
        return self._scripts

    # ------------------------------------------------------------------ meta
    def meta(self) -> dict[str, str]:
        return _decode(self.r.hgetall(self.k.meta))

    def exists(self) -> bool:
        return bool(self.r.exists(self.k.meta))

    def state(self) -> str | None:
        return text(self.r.hget(self.k.meta, Meta.STATE))

    def begin(self, *, now: float, fmt: str, scheduler: str, max_attempts: int, pin: bytes, signer: str) -> None:
        """The first start: counters at zero, the start pin, listed among the workloads."""
        pipe = self.r.pipeline()
        pipe.hset(
            self.k.meta,
            mapping={
                Meta.STATE: State.RUNNING.value,
                Meta.STARTED_AT: now,
                Meta.ENQUEUED: 0,
                Meta.CHUNKS: 0,
                Meta.RETRY_SEQ: 0,
                Meta.FORMAT: fmt,
                Meta.SCHEDULER: scheduler,
                Meta.MAX_ATTEMPTS: max_attempts,
                Meta.PIN: encode_pin(pin),
                Meta.SIGNER: signer,
            },
        )
        pipe.zadd(WORKLOADS, {self.id: now})
        pipe.execute()

    def resume(self, scheduler: str) -> None:
        pipe = self.r.pipeline()
        pipe.hset(self.k.meta, mapping={Meta.STATE: State.RUNNING.value, Meta.SCHEDULER: scheduler})
        pipe.hdel(self.k.meta, Meta.FINISHED_AT, Meta.ERROR)
        pipe.execute()

    def pin(self) -> bytes | None:
        """The sealed start pin (None: never started, or deleted)."""
        return decode_pin(self.r.hget(self.k.meta, Meta.PIN))

    def cursor(self) -> tuple[int, int]:
        """(records enqueued, chunks enqueued) as Redis holds them."""
        enqueued, chunks = self.r.hmget(self.k.meta, Meta.ENQUEUED, Meta.CHUNKS)
        return int(enqueued or 0), int(chunks or 0)

    def total_and_enqueued(self) -> tuple[int | None, int]:
        total, enqueued = self.r.hmget(self.k.meta, Meta.TOTAL, Meta.ENQUEUED)
        return (int(total) if total is not None else None), int(enqueued or 0)

    def set_state(self, state: State) -> None:
        self.r.hset(self.k.meta, Meta.STATE, state.value)

    def fail(self, *, generic: str, sealed: str, now: float) -> None:
        """The workload failed as a whole (its script does not load or parse): a generic line in
        clear, the full one sealed (it may quote the script or the data)."""
        pipe = self.r.pipeline()
        pipe.hset(
            self.k.meta,
            mapping={
                Meta.STATE: State.FAILED.value,
                Meta.FINISHED_AT: now,
                Meta.ERROR: generic,
                Meta.ERROR_SEALED: sealed,
            },
        )
        pipe.zadd(WORKLOADS, {self.id: now}, nx=True)
        pipe.execute()

    def sealed_error(self) -> bytes | None:
        return raw(self.r.hget(self.k.meta, Meta.ERROR_SEALED))

    def set_processor_error(self, worker: str, error: str) -> None:
        self.r.hset(self.k.meta, Meta.PROCESSOR_ERROR, f"{worker}: {error}")

    def processor_error(self) -> str | None:
        return text(self.r.hget(self.k.meta, Meta.PROCESSOR_ERROR))

    def next_retry_seq(self) -> int:
        return int(self.r.hincrby(self.k.meta, Meta.RETRY_SEQ, 1))

    # ------------------------------------------------------------------ the scheduler's lock
    def take_lock(self, me: str, ttl: int, holder_dead: Any = None) -> None:
        """Take the lock, or ``LockHeld``; a holder that ``holder_dead(holder)`` says is gone is
        replaced at once instead of after its TTL."""
        if self.r.set(self.k.lock, me, nx=True, ex=ttl):
            return
        holder = text(self.r.get(self.k.lock))
        if holder is not None and holder != me and not (holder_dead and holder_dead(holder)):
            raise LockHeld(holder)
        self.r.set(self.k.lock, me, ex=ttl)

    def renew_lock(self, me: str, ttl: int) -> bool:
        """False when another scheduler took the lock over (its lock is left as it is)."""
        return bool(self.scripts.renew_lock(keys=[self.k.lock], args=[me, ttl]))

    def release_lock(self, me: str) -> None:
        if self.r.get(self.k.lock) == me.encode():
            self.r.delete(self.k.lock)

    # ------------------------------------------------------------------ enqueue (into a MULTI)
    def put_chunk(self, pipe: Any, chunk: str, records: bytes) -> None:
        """A data chunk's sealed records (packed), in ``pipe``: one value, read once, deleted
        by the chunk's commit."""
        pipe.set(self.k.chunk(chunk), records)

    def put_statuses(self, pipe: Any, statuses: list[tuple[int, bytes]]) -> None:
        if statuses:
            pipe.hset(self.k.st, mapping={str(rid): sealed for rid, sealed in statuses})

    def mark_failed(self, pipe: Any, rids: Iterable[int]) -> None:
        for rid in rids:
            pipe.setbit(self.k.failed, rid, 1)

    def advance(self, pipe: Any, records: int, chunks: int, total: int | None = None) -> None:
        """Move the enqueue cursor; ``total`` once the data is read to its end."""
        pipe.hincrby(self.k.meta, Meta.ENQUEUED, records)
        pipe.hincrby(self.k.meta, Meta.CHUNKS, chunks)
        if total is not None:
            pipe.hset(self.k.meta, Meta.TOTAL, total)

    def add_jobs(self, pipe: Any, sealed_specs: Mapping[str, bytes]) -> None:
        """Jobs queued (pending with an infinite lease until started), their specs kept."""
        pipe.hset(self.k.spec, mapping=dict(sealed_specs))
        pipe.zadd(self.k.pending, dict.fromkeys(sealed_specs, INF))

    # ------------------------------------------------------------------ chunks in flight
    def in_flight(self) -> int:
        return int(self.r.zcard(self.k.pending))

    def idle(self) -> bool:
        """Nothing pending and nothing waiting for a retry."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(self.k.pending)
        pipe.zcard(self.k.retry)
        pending, retry = pipe.execute()
        return pending == 0 and retry == 0

    def start(
        self, jid: str, chunk: str, *, deadline: float, rids: list[int], start_note: bytes, worker: str
    ) -> Lease | None:
        """Take the lease of ``jid`` and fetch its sealed records (a missing one is absent);
        None when the job is no longer pending."""
        pipe = self.r.pipeline(transaction=False)
        self.scripts.start(
            keys=[self.k.pending, self.k.n, self.k.rec, held_key(worker), self.k.chunk(chunk)],
            args=[jid, deadline, len(rids), join_ids(rids), start_note],
            client=pipe,
        )
        pipe.get(self.k.chunk(chunk))  # read directly, not through Lua (see start.lua)
        reply, packed = pipe.execute()
        if reply is None:
            return None
        if int(reply[0]) == 1:
            return Lease(unpack_values(raw(packed) or b""), own=True)
        fetched = zip(rids, reply[1:], strict=True)
        return Lease({rid: v for rid, value in fetched if (v := raw(value)) is not None}, own=False)

    def renew(self, jid: str, deadline: float) -> None:
        """Extend a lease held (never re-create one that was reclaimed or committed)."""
        self.r.zadd(self.k.pending, {jid: deadline}, xx=True)

    def commit(self, outcome: ChunkOutcome, worker: str) -> bool:
        """Commit ``outcome`` if its job is still pending; False when it lost its lease."""
        o = outcome
        messages = [x for mid, value in o.messages for x in (mid, value)]
        committed = self.scripts.commit(
            keys=[self.k.pending, self.k.n, self.k.rec, self.k.st, self.k.done, self.k.failed, self.k.retry, self.k.parts,
                  self.k.perf, self.k.spec, OUTBOX, OUTBOX_TIMES, held_key(worker), self.k.chunk(o.chunk), self.k.notes],
            args=[
                o.jid, o.chunk, o.part.encode(), o.elapsed, o.finished_at, o.processed,
                o.statuses, join_runs(o.done), join_ids(o.failed), ",".join(f"{e.member}={e.due:.3f}" for e in o.retries),
                o.keep, o.note_field, o.note, join_ids(o.drop),
                *messages,
            ],
        )  # fmt: skip
        return bool(committed)

    def reclaim(self, jid: str) -> bytes | None:
        """Take a chunk back from a dead or lost job: its sealed spec, or None if it committed."""
        return self.scripts.reclaim(keys=[self.k.pending, self.k.n, self.k.spec], args=[jid])

    def expired(self, now: float) -> list[str]:
        """Jobs whose lease ran out."""
        return [str(text(j)) for j in self.r.zrangebyscore(self.k.pending, "-inf", now)]

    def queued(self) -> list[str]:
        """Jobs queued and not yet started."""
        return [str(text(j)) for j in self.r.zrangebyscore(self.k.pending, INF, INF)]

    def lease(self, jid: str) -> float | None:
        score = self.r.zscore(self.k.pending, jid)
        return float(score) if score is not None else None

    def end_lease(self, jid: str, now: float) -> None:
        """End a held lease now (its worker died): only a pending job, and only ever earlier."""
        self.r.zadd(self.k.pending, {jid: now}, xx=True, lt=True)

    def spec(self, jid: str) -> bytes | None:
        return raw(self.r.hget(self.k.spec, jid))

    def specs(self) -> Iterator[tuple[str, bytes]]:
        """(job id, sealed spec) of every chunk in flight."""
        for jid, sealed in self.r.hscan_iter(self.k.spec, count=500):
            yield str(text(jid)), raw(sealed) or b""

    def start_note(self, jid: str) -> bytes | None:
        return raw(self.r.hget(self.k.n, Counters.start(jid)))

    def count_reclaimed(self, pipe: Any) -> None:
        pipe.hincrby(self.k.meta, Meta.RECLAIMED, 1)

    def retire_chunk(self, pipe: Any, chunk: str, give_up: list[int], requeued: bool) -> None:
        """A reclaimed data chunk whose records (some or all) failed for good: their sealed
        records move to ``rec`` (``rqp retry`` needs them); its own records go when nothing of
        it is queued again."""
        if give_up:
            packed = raw(self.r.get(self.k.chunk(chunk)))
            if packed:
                values = unpack_values(packed)
                kept = {str(rid): values[rid] for rid in give_up if rid in values}
                if kept:
                    pipe.hset(self.k.rec, mapping=kept)
        if not requeued:
            pipe.delete(self.k.chunk(chunk))

    # ------------------------------------------------------------------ retries and failures
    def due_retries(self, now: float, limit: int) -> list[RetryEntry]:
        return [
            RetryEntry.parse(str(text(m))) for m in self.r.zrangebyscore(self.k.retry, "-inf", now, start=0, num=limit)
        ]

    def take_retries(self, pipe: Any, entries: list[RetryEntry]) -> None:
        if entries:
            pipe.zrem(self.k.retry, *[e.member for e in entries])

    def fail_records(self, pipe: Any, statuses: list[tuple[int, bytes]]) -> None:
        """Records failed for good (their sealed statuses), in ``pipe``."""
        for rid, sealed in statuses:
            pipe.hset(self.k.st, rid, sealed)
            pipe.setbit(self.k.failed, rid, 1)

    def requeue_failed(self) -> int:
        """``rqp retry W --failed``: every failed record queued again as a first attempt, the
        workload running again (and kept), handed to a serving scheduler. Returns how many."""
        from ._global import submit  # noqa: PLC0415 - the module-level helpers import this one

        rids = list(bit_positions(raw(self.r.get(self.k.failed))))
        if not rids:
            return 0
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(self.k.retry, {RetryEntry(rid, 1).member: 0 for rid in rids})
        for rid in rids:
            pipe.setbit(self.k.failed, rid, 0)
        pipe.hset(self.k.meta, Meta.STATE, State.RUNNING.value)
        pipe.hdel(self.k.meta, Meta.FINISHED_AT)
        for key in self.k.all():
            pipe.persist(key)
        submit(pipe, self.id)
        pipe.execute()
        return len(rids)

    # ------------------------------------------------------------------ reading
    def done_bits(self, rids: list[int]) -> list[bool]:
        pipe = self.r.pipeline(transaction=False)
        for rid in rids:
            pipe.getbit(self.k.done, rid)
        return [bool(b) for b in pipe.execute()]

    def done_bitmap(self) -> bytes:
        return raw(self.r.get(self.k.done)) or b""

    def failed_ids(self) -> list[int]:
        return list(bit_positions(raw(self.r.get(self.k.failed))))

    def status(self, rid: int) -> bytes | None:
        return raw(self.r.hget(self.k.st, str(rid)))

    def statuses(self, rids: list[int]) -> list[bytes | None]:
        return [raw(v) for v in self.r.hmget(self.k.st, [str(r) for r in rids])] if rids else []

    def record_facts(self, rid: int) -> tuple[int | None, int | None, bool, bool]:
        """(enqueued, total, done bit, failed bit) in one round trip; enqueued None: unknown."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.k.meta, Meta.ENQUEUED, Meta.TOTAL)
        pipe.getbit(self.k.done, rid)
        pipe.getbit(self.k.failed, rid)
        (enqueued, total), done, failed = pipe.execute()
        return (
            int(enqueued) if enqueued is not None else None,
            int(total) if total is not None else None,
            bool(done),
            bool(failed),
        )

    def notes_for(self, rid: int) -> list[tuple[str, bytes]]:
        """(chunk, sealed note) of the committed chunks that may have done record ``rid``: data
        chunks whose range holds it, and every retry chunk."""
        out = []
        for field_, sealed in self.r.hscan_iter(self.k.notes, count=1000):
            chunk, first, last = parse_note_field(str(text(field_)))
            if first <= rid <= last or first < 0:
                out.append((chunk, raw(sealed) or b""))
        return out

    def parts(self) -> dict[str, PartRef]:
        """chunk -> the result part its commit named."""
        return {str(text(a)): PartRef.parse(str(text(b))) for a, b in self.r.hgetall(self.k.parts).items()}

    def perf(self) -> tuple[int, float]:
        """(records processed, seconds they took), over every chunk so far."""
        records, seconds = self.r.hmget(self.k.perf, Perf.RECORDS, Perf.SECONDS)
        return int(records or 0), float(seconds or 0.0)

    def snapshot(self) -> dict[str, Any]:
        """Meta, counts and perf in one round trip, for progress."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.k.meta)
        pipe.bitcount(self.k.done)
        pipe.bitcount(self.k.failed)
        pipe.hget(self.k.n, Counters.PROCESSING)
        pipe.zcard(self.k.retry)
        pipe.hgetall(self.k.perf)
        meta, done, failed, processing, retrying, perf = pipe.execute()
        return {
            "meta": _decode(meta),
            "done": int(done),
            "failed": int(failed),
            "processing": max(0, int(processing or 0)),
            "retrying": int(retrying),
            "perf": _decode(perf),
        }

    # ------------------------------------------------------------------ the end
    def finish(self, *, finished_at: float, results_sha256: str, ttl: int, keep_records: bool) -> None:
        """Done: what only served the run is deleted, the rest expires after ``ttl`` seconds."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self.k.meta,
            mapping={Meta.STATE: State.DONE.value, Meta.FINISHED_AT: finished_at, Meta.RESULTS_SHA256: results_sha256},
        )
        pipe.delete(self.k.spec, self.k.parts, self.k.retry, self.k.pending)
        if not keep_records:
            pipe.delete(self.k.rec)
        for key in (
            self.k.meta,
            self.k.st,
            self.k.done,
            self.k.failed,
            self.k.n,
            self.k.perf,
            self.k.rec,
            self.k.notes,
        ):
            pipe.expire(key, ttl)
        pipe.execute()


def bit_positions(bitmap: bytes | None) -> Iterator[int]:
    """Record ids whose bit is set in a Redis bitmap (bit 0 is the high bit of byte 0)."""
    if not bitmap:
        return
    for i, byte in enumerate(bitmap):
        if byte:
            for b in range(8):
                if byte & (0x80 >> b):
                    yield i * 8 + b


def now() -> float:
    return time.time()
