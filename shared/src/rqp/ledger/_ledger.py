"""One workload's state in Redis, behind typed methods: the only code that names its keys,
spells its values or calls its scripts.

The pending zset is the single source of truth for "this job may still commit": ``start`` and
``commit`` succeed only while the job id is in it, and ``reclaim`` removes it. Whichever of a
slow worker's commit and the scheduler's reclaim runs first wins; the other sees the job gone and
does nothing. That is what makes every record's result count exactly once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from ..chunk_records import is_sealed_chunk
from ._codecs import (
    ChunkKind,
    Control,
    Counters,
    Head,
    JobId,
    Meta,
    PartRef,
    Perf,
    Priority,
    RetryEntry,
    State,
    chunk_name,
    decode_pin,
    encode_pin,
    join_ids,
    join_runs,
    join_spans,
    parse_note_field,
    raw,
    text,
    unpack_values,
)
from ._global import submit
from ._keys import OUTBOX, OUTBOX_TIMES, PRIORITIES, WORKLOADS, WorkloadKeys, held_key
from ._scripts import Scripts, run_with

__all__ = ["INF", "ChunkOutcome", "JobRefused", "Lease", "Ledger", "LockHeld", "Snapshot"]

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
    #: CPU seconds the script hosts spent on the records (adaptive chunk sizes); None when not
    #: measured (an in-process host, /proc unreadable, a host that died mid-chunk)
    cpu: float | None = None


@dataclass
class Lease:
    """What ``start`` hands a worker: the chunk's sealed records, by id (format 1, and a retry
    chunk's kept records), or its one sealed value (format 2, ``rqp.chunk_records``)."""

    records: dict[int, bytes]
    #: the chunk had its own records (a data chunk): those not done must be kept at commit
    own: bool
    #: a data chunk's records as one value (``rqp.chunk_records.seal_records``), opened by the
    #: worker against its spec's ids; empty when ``records`` holds them one by one
    sealed: bytes = b""


class JobRefused(Exception):
    """START refused a job (``start.lua``): ``why`` is 'stale', 'committed' or 'finished'."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Snapshot(TypedDict):
    """A workload's progress facts as ``Ledger.snapshot`` reads them in one round trip."""

    #: the meta hash (``Meta``), decoded
    meta: dict[str, str]
    done: int
    failed: int
    processing: int
    retrying: int
    #: the perf hash (``Perf``), decoded
    perf: dict[str, str]


class LockHeld(Exception):
    """Another scheduler holds the workload's lock; ``holder`` says which."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def _decode(d: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {str(text(a)): str(text(b)) for a, b in d.items()}


def _count(value: bytes | str | None) -> int:
    """A plain counter as progress shows it: junk a Redis writer left (not an integer) reads as 0,
    never an exception in a report (an ended workload's counts come from its sealed summary)."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


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

    def begin(
        self, *, now: float, fmt: str, scheduler: str, max_attempts: int, pin: bytes, signer: str, head: str
    ) -> None:
        """The first start: counters at zero (and sealed in ``head``), the start pin, listed
        among the workloads."""
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
                Meta.HEAD: head,
            },
        )
        pipe.zadd(WORKLOADS, {self.id: now})
        pipe.execute()

    def resume(self, scheduler: str) -> None:
        """A scheduler takes it over: running again, unless an operator paused or cancelled it."""
        pipe = self.r.pipeline()
        pipe.hset(self.k.meta, Meta.SCHEDULER, scheduler)
        if self.state() not in (State.PAUSED, State.CANCELLING):
            pipe.hset(self.k.meta, Meta.STATE, State.RUNNING.value)
        pipe.hdel(self.k.meta, Meta.FINISHED_AT, Meta.ERROR)
        pipe.execute()

    def pin(self) -> bytes | None:
        """The sealed start pin (None: never started, or deleted)."""
        return decode_pin(self.r.hget(self.k.meta, Meta.PIN))

    def head(self) -> bytes | None:
        """The sealed head (``rqp.ledger.Head``), as stored; None when there is none."""
        return raw(self.r.hget(self.k.meta, Meta.HEAD))

    def set_head(self, pipe: Pipeline, sealed_head: str) -> None:
        pipe.hset(self.k.meta, Meta.HEAD, sealed_head)

    def show_read(self, pipe: Pipeline, read_bytes: int, data_bytes: int) -> None:
        """How far the reading of the data got (plain: shown while the total is unknown)."""
        pipe.hset(self.k.meta, mapping={Meta.READ_BYTES: read_bytes, Meta.DATA_BYTES: data_bytes})

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

    # ------------------------------------------------------------------ operators' control
    def priority(self) -> Priority:
        value = text(self.r.hget(PRIORITIES, self.id))
        try:
            return Priority(value) if value else Priority.NORMAL
        except ValueError:
            return Priority.NORMAL  # not one rqp wrote: the default

    def set_priority(self, priority: Priority) -> None:
        """Before the workload starts or while it runs: chunks queued from now on go to its queue."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(PRIORITIES, self.id, priority.value)
        if self.exists():
            pipe.hset(self.k.meta, Meta.PRIORITY, priority.value)
        pipe.execute()

    def show_priority(self, priority: Priority) -> None:
        """The priority the scheduler queues at (from signed requests), shown where people read it."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(PRIORITIES, self.id, priority.value)
        pipe.hset(self.k.meta, Meta.PRIORITY, priority.value)
        pipe.execute()

    def control(self) -> Control | None:
        """What an operator asked for and the scheduler has not finished carrying out."""
        value = text(self.r.hget(self.k.meta, Meta.CONTROL))
        return Control(value) if value else None

    # ------------------------------------------------------------------ the scheduler's lock
    def take_lock(self, me: str, ttl: int, holder_dead: Callable[[str], bool] | None = None) -> str:
        """Take the lock: its fence token (``"<generation> <me>"``, every write of the run checks
        it), or ``LockHeld``; a holder that ``holder_dead(holder)`` says is gone is replaced at once
        instead of after its TTL."""
        try:
            holder = text(self.r.get(self.k.lock)) if holder_dead is not None else None
        except redis.ResponseError:  # not a string: junk, which the script deletes
            holder = None
        gone = holder if holder and holder != me and holder_dead is not None and holder_dead(holder) else ""
        taken, value = self.scripts.take_lock(keys=[self.k.lock, self.k.fence], args=[me, ttl, gone])
        if not taken:
            raise LockHeld(str(text(value)))
        return str(text(value))

    def renew_lock(self, me: str, ttl: int, token: str) -> bool:
        """False when another scheduler took the lock over since ``token`` (its lock is left as it is)."""
        return bool(self.scripts.renew_lock(keys=[self.k.lock, self.k.fence], args=[me, ttl, token]))

    def release_lock(self, me: str, token: str) -> None:
        self.scripts.release_lock(keys=[self.k.lock, self.k.fence], args=[me, token])

    # ------------------------------------------------------------------ enqueue (into a MULTI)
    def put_chunk(self, pipe: Pipeline, chunk: str, records: bytes) -> None:
        """A data chunk's sealed records, in ``pipe``: one value (``rqp.chunk_records``; the older
        per-record packing still reads), read once, deleted by the chunk's commit."""
        pipe.set(self.k.chunk(chunk), records)

    def chunks_known(self, chunks: list[str]) -> set[str]:
        """Those of ``chunks`` Redis already has: in flight (their records are there) or committed.
        Normally none (the enqueue goes forward); after Redis's state went back (a head put back,
        or a restart that lost writes) the enqueue skips these instead of queueing them twice."""
        if not chunks:
            return set()
        pipe = self.r.pipeline(transaction=False)
        for chunk in chunks:
            pipe.exists(self.k.chunk(chunk))
            pipe.hexists(self.k.parts, chunk)
        found = pipe.execute()
        return {c for i, c in enumerate(chunks) if found[2 * i] or found[2 * i + 1]}

    def put_statuses(self, pipe: Pipeline, statuses: list[tuple[int, bytes]]) -> None:
        if statuses:
            pipe.hset(self.k.st, mapping={str(rid): sealed for rid, sealed in statuses})

    def mark_failed(self, pipe: Pipeline, rids: Iterable[int]) -> None:
        count = 0
        for rid in rids:
            pipe.setbit(self.k.failed, rid, 1)
            count += 1
        if count:
            pipe.hincrby(self.k.n, Counters.FAILED, count)

    def advance(self, pipe: Pipeline, head: Head, sealed_head: str) -> None:
        """Move the enqueue cursor to ``head`` (sealed: ``sealed_head``); the plain fields say
        the same for those who read Redis without the key."""
        fields: dict[FieldT, EncodableT] = {
            Meta.ENQUEUED: head.enqueued,
            Meta.CHUNKS: head.chunks,
            Meta.HEAD: sealed_head,
        }
        if head.total is not None:
            fields[Meta.TOTAL] = head.total
        pipe.hset(self.k.meta, mapping=fields)

    def add_jobs(self, pipe: Pipeline, sealed_specs: Mapping[str, bytes]) -> None:
        """Jobs queued (pending with an infinite lease until started), their specs kept."""
        pipe.hset(self.k.spec, mapping={jid: sealed for jid, sealed in sealed_specs.items()})
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
        self,
        jid: str,
        chunk: str,
        *,
        deadline: float,
        runs: tuple[tuple[int, int, int], ...],
        sealed_spec: bytes,
        start_note: bytes,
        worker: str,
    ) -> Lease | None:
        """Take the lease of ``jid`` and fetch its sealed records (a missing one is absent);
        None when the job is no longer pending; ``JobRefused`` when it is not the job queued for
        ``chunk`` (``sealed_spec`` differs), the chunk committed, or a record of it finished."""
        rids = [first + i for first, count, _ in runs for i in range(count)]
        reply, packed = run_with(
            self.r,
            self.scripts.start,
            keys=[self.k.pending, self.k.n, self.k.rec, held_key(worker), self.k.chunk(chunk), self.k.spec,
                  self.k.parts, self.k.done, self.k.failed],
            args=[jid, deadline, len(rids), join_ids(rids), start_note, sealed_spec, chunk, join_spans(runs),
                  str(JobId.parse(jid).next())],
            then=lambda pipe: pipe.get(self.k.chunk(chunk)),  # read directly, not through Lua (see start.lua)
        )  # fmt: skip
        if reply is None:
            return None
        if int(reply[0]) == -1:
            raise JobRefused(str(text(reply[1])))
        if int(reply[0]) == 1:
            value = raw(packed) or b""
            if is_sealed_chunk(value):
                return Lease({}, own=True, sealed=value)
            return Lease(unpack_values(value), own=True)
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
                o.keep, o.note_field, o.note, join_ids(o.drop), "" if o.cpu is None else f"{o.cpu:.6f}",
                *messages,
            ],
        )  # fmt: skip
        return bool(committed)

    def reclaim(self, jid: str) -> bytes | None:
        """Take a chunk back from a dead or lost job: its sealed spec, or None if it committed."""
        j = JobId.parse(jid)
        self.r.hdel(self.k.n, Counters.abandoned(jid))
        return self.scripts.reclaim(
            keys=[self.k.pending, self.k.n, self.k.spec, self.k.parts], args=[jid, j.chunk, str(j.next())]
        )

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

    def release(self, jid: str, worker: str, reason: str, now: float) -> bool:
        """A processor that cannot open the workload hands ``jid`` back (it never started it);
        True the first time ``worker`` says so."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k.n, Counters.released(jid), worker)
        pipe.hexists(self.k.blind, worker)
        pipe.hset(self.k.blind, worker, json.dumps({"at": now, "reason": reason}))
        _, known, _ = pipe.execute()
        return not known

    def abandon(self, jid: str, reason: str, now: float) -> None:
        """The worker holding ``jid`` cannot finish it: its lease ends now and ``reason`` is what
        the scheduler gives its records if it fails them (``abandoned``)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k.n, Counters.abandoned(jid), reason)
        pipe.zadd(self.k.pending, {jid: now}, xx=True, lt=True)
        pipe.execute()

    def abandoned(self, jid: str) -> str | None:
        return text(self.r.hget(self.k.n, Counters.abandoned(jid)))

    def released(self, jid: str) -> bool:
        return bool(self.r.hexists(self.k.n, Counters.released(jid)))

    def released_among(self, jids: list[str]) -> set[str]:
        if not jids:
            return set()
        flags = self.r.hmget(self.k.n, [Counters.released(j) for j in jids])
        return {j for j, f in zip(jids, flags, strict=True) if f is not None}

    def forget_released(self, pipe: Pipeline, jid: str) -> None:
        pipe.hdel(self.k.n, Counters.released(jid))

    def blind(self) -> dict[str, dict[str, Any]]:
        """Processors that could not open the workload: worker -> {at, reason}."""
        return {str(text(w)): json.loads(v) for w, v in self.r.hgetall(self.k.blind).items()}

    def count_reclaimed(self, pipe: Pipeline) -> None:
        pipe.hincrby(self.k.meta, Meta.RECLAIMED, 1)

    def chunk_records(self, chunk: str) -> dict[int, bytes] | bytes:
        """A data chunk's sealed records (under the chunk's scoped key): its one sealed value
        (``rqp.chunk_records``), or by id in the older per-record form; empty once gone."""
        value = raw(self.r.get(self.k.chunk(chunk))) or b""
        return value if is_sealed_chunk(value) else unpack_values(value)

    def retire_chunk(self, pipe: Pipeline, chunk: str, kept: list[tuple[int, bytes]], requeued: bool) -> None:
        """A reclaimed data chunk whose records (some or all) failed for good: ``kept`` (their
        records, sealed again under the data key) go to ``rec`` for ``rqp retry``; the chunk's
        own records go when nothing of it is queued again."""
        if kept:
            pipe.hset(self.k.rec, mapping={str(rid): sealed for rid, sealed in kept})
        if not requeued:
            pipe.delete(self.k.chunk(chunk))

    # ------------------------------------------------------------------ retries and failures
    def due_retries(self, now: float, limit: int) -> list[RetryEntry]:
        return [
            RetryEntry.parse(str(text(m))) for m in self.r.zrangebyscore(self.k.retry, "-inf", now, start=0, num=limit)
        ]

    def take_retries(self, pipe: Pipeline, entries: list[RetryEntry]) -> None:
        if entries:
            pipe.zrem(self.k.retry, *[e.member for e in entries])

    def fail_records(self, pipe: Pipeline, statuses: list[tuple[int, bytes]]) -> None:
        """Records failed for good (their sealed statuses), in ``pipe``."""
        for rid, sealed in statuses:
            pipe.hset(self.k.st, rid, sealed)
            pipe.setbit(self.k.failed, rid, 1)
        if statuses:
            pipe.hincrby(self.k.n, Counters.FAILED, len(statuses))

    def requeue_failed(self) -> int:
        """``rqp retry W --failed``: the workload running again (and kept), handed to a serving
        scheduler, which starts a new round with the failed records its sealed summary lists
        (``WorkloadRun``): nothing here decides which records run. Returns how many failed."""
        count = int(self.r.bitcount(self.k.failed))
        if not count or self.state() not in (State.DONE, State.FAILED):
            return 0
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k.meta, Meta.STATE, State.RUNNING.value)
        pipe.hdel(self.k.meta, Meta.FINISHED_AT)
        for key in self.k.all():
            pipe.persist(key)
        submit(pipe, self.id)
        pipe.execute()
        return count

    def new_round(self, pipe: Pipeline, sealed_head: str, queued: list[tuple[int, bytes]], due: float) -> None:
        """The records of ``queued`` (id, sealed "queued" status) queued again as first attempts
        of a new round (sealed in ``sealed_head``), their failed bits cleared."""
        self.set_head(pipe, sealed_head)
        # a new run: its throughput is its own (``rqp.throughput``), not diluted by the time between runs
        pipe.delete(self.k.perf)
        if queued:
            pipe.hset(self.k.st, mapping={str(rid): sealed for rid, sealed in queued})
            pipe.zadd(self.k.retry, {RetryEntry(rid, 1).member: due for rid, _ in queued})
            for rid, _ in queued:
                pipe.setbit(self.k.failed, rid, 0)
            pipe.hincrby(self.k.n, Counters.FAILED, -len(queued))

    def keep_failed(self, pipe: Pipeline, sealed: list[tuple[int, bytes]]) -> None:
        """Records that stay failed into a new round (``new_round``): their sealed "failed" status
        records, written again, and their failed bits set."""
        pipe.hset(self.k.st, mapping={str(rid): s for rid, s in sealed})
        for rid, _ in sealed:
            pipe.setbit(self.k.failed, rid, 1)

    # ------------------------------------------------------------------ reading
    def drop_all_retries(self) -> None:
        self.r.delete(self.k.retry)

    def drop_retries(self, members: list[str]) -> None:
        if members:
            self.r.zrem(self.k.retry, *members)

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

    def notes(self) -> Iterator[tuple[str, bytes]]:
        """(chunk, sealed note) of every committed chunk that did records, in any order."""
        for field_, sealed in self.r.hscan_iter(self.k.notes, count=1000):
            yield parse_note_field(str(text(field_)))[0], raw(sealed) or b""

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

    def part_of(self, chunk: str) -> PartRef | None:
        """The result part ``chunk``'s commit named; None while it has not committed."""
        value = text(self.r.hget(self.k.parts, chunk))
        return PartRef.parse(str(value)) if value is not None else None

    def perf(self) -> tuple[int, float]:
        """(records processed, seconds they took), over every chunk so far."""
        records, seconds = self.r.hmget(self.k.perf, Perf.RECORDS, Perf.SECONDS)
        return int(records or 0), float(seconds or 0.0)

    def sizing_perf(self) -> tuple[int, float, int, float]:
        """(records, their seconds, records whose script CPU was measured, that CPU's seconds),
        over every chunk so far, for the scheduler's chunk sizes. Any Redis writer may put junk
        here (trust table): a field that is not a finite number >= 0 reads as 0 (unmeasured), so
        junk can only make chunk sizes worse within their bounds, never stop the scheduler."""
        values = self.r.hmget(self.k.perf, Perf.RECORDS, Perf.SECONDS, Perf.CPU_RECORDS, Perf.CPU)
        records, seconds, cpu_records, cpu = (_finite(v) for v in values)
        return int(records), seconds, int(cpu_records), cpu

    def perf_hash(self) -> dict[str, str]:
        """The perf hash as it is (plain: ``rqp.throughput`` reads the run's throughput from it)."""
        return _decode(self.r.hgetall(self.k.perf))

    def snapshot(self) -> Snapshot:
        """Meta, counts and perf in one round trip of O(1) commands, for progress (whatever the
        workload's size: the done and failed counts are counters kept beside the bitmaps)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.k.meta)
        pipe.hmget(self.k.n, Counters.PROCESSING, Counters.DONE, Counters.FAILED)
        pipe.zcard(self.k.retry)
        pipe.hgetall(self.k.perf)
        meta, (processing, done, failed), retrying, perf = pipe.execute()
        return {
            "meta": _decode(meta),
            "done": _count(done),
            "failed": max(0, _count(failed)),
            "processing": max(0, _count(processing)),
            "retrying": int(retrying),
            "perf": _decode(perf),
        }

    def delete_all(self) -> int:
        """Every key of the workload, and its place in the list of workloads; how many keys."""
        keys = list(self.r.scan_iter(match=self.k.prefix + "*", count=1000))
        pipe = self.r.pipeline(transaction=True)
        for i in range(0, len(keys), 1000):
            pipe.delete(*keys[i : i + 1000])
        pipe.zrem(WORKLOADS, self.id)
        pipe.hdel(PRIORITIES, self.id)
        pipe.execute()
        return len(keys)

    def clear_generation(self, data_chunks: int, retry_chunks: int) -> int:
        """Every key of an ended generation, before the next generation of a re-packed workload
        begins under the same id; how many there were. Kept: the run lock and its fence (the
        scheduler clearing it holds it) and the signed request list (a request for the new generation may already be
        there; those dated before its manifest's creation are refused by ``rqp.oplog``).

        The per-chunk record keys are named, not scanned (the scheduler's Redis user has no
        SCAN): ``data_chunks`` data chunks (the ended generation's sealed head says how many) and
        ``retry_chunks`` retry chunks -- left over, one of them would make the new generation's
        enqueue skip its own chunk of that name as already queued."""
        kept = {self.k.lock, self.k.fence, self.k.control}
        names = [k for k in self.k.all() if k not in kept]
        names += [self.k.chunk(chunk_name(ChunkKind.DATA, i)) for i in range(data_chunks)]
        names += [self.k.chunk(chunk_name(ChunkKind.RETRY, i)) for i in range(retry_chunks)]
        pipe = self.r.pipeline(transaction=True)
        for i in range(0, len(names), 1000):
            pipe.delete(*names[i : i + 1000])
        return sum(int(n) for n in pipe.execute())

    # ------------------------------------------------------------------ the end
    def finish(
        self,
        *,
        finished_at: float,
        results_sha256: str,
        ttl: int,
        keep_records: bool,
        sealed_head: str,
        state: State = State.DONE,
    ) -> None:
        """Done (its head ``sealed_head`` closed): what only served the run is deleted, the rest
        expires after ``ttl`` seconds."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self.k.meta,
            mapping={
                Meta.STATE: state.value,
                Meta.FINISHED_AT: finished_at,
                Meta.RESULTS_SHA256: results_sha256,
                Meta.HEAD: sealed_head,
            },
        )
        # parts stay (they expire with the rest): a chunk named there has committed, and a job
        # replayed for it later is refused (start.lua)
        pipe.delete(self.k.spec, self.k.retry, self.k.pending)
        pipe.hdel(self.k.meta, Meta.CONTROL)
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
            self.k.parts,
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


def _finite(value: object) -> float:
    """A perf field as a finite number >= 0 (and below 2**53, so ``int`` of it is exact); 0.0 when
    missing or junk."""
    try:
        number = float(value.decode() if isinstance(value, bytes) else str(value))
    except (ValueError, UnicodeDecodeError):
        return 0.0
    return number if 0.0 <= number < 2.0**53 else 0.0
