"""Status records: one per record, encrypted, readable at a glance through ``rqp status``.

A record moves ``queued -> processing -> done | failed``; a retryable failure goes back to
``queued`` with its attempt count and last error until ``max_attempts`` is reached.

``queued`` (the first time) and ``processing`` are not stored per record: the scheduler and the
processors would otherwise encrypt and write a status per record to say what Redis already
knows per chunk. A record with no stored status is in the chunk whose sealed spec lists it:
``processing`` if that job has started (a sealed start note -- when, which worker -- beside its
lease), else ``queued``. ``record_status`` puts that together, so every record still has a
status record to show; what is stored is what needs a per-record fact: done, failed (with its
error), and queued again for a retry (with the error and when it is due).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import redis

from .errors import ForbiddenJobError, IntegrityError, RqpError, WorkloadError
from .ledger import PREEMPTED, Ledger, Meta, Perf, Refusal, Snapshot, manifest_sha256, preempted, read_refusal
from .storage import BlobStore
from .summary import Summary
from .throughput import PERF_FIRST, estimated_total, read_fraction, records_per_second
from .workload import Workload, blob_name

if TYPE_CHECKING:
    from .jobs import ChunkSpec

__all__ = [
    "DONE",
    "ENDED",
    "FAILED",
    "PROCESSING",
    "QUEUED",
    "REFUSED",
    "STATES",
    "ChunkNote",
    "Progress",
    "StatusRecord",
    "plain_float",
    "progress_of",
    "read_progress",
    "record_status",
    "refusal_shown",
    "seal_start",
    "verified_progress",
]

QUEUED = "queued"
PROCESSING = "processing"
DONE = "done"
FAILED = "failed"
STATES = (QUEUED, PROCESSING, DONE, FAILED)
#: the state shown for a workload the scheduler refused to run (``refusal_shown``)
REFUSED = "refused"
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def _str(x: str | None) -> str:
    return "null" if x is None else _ENCODE(x)


def _num(x: float | None) -> str:
    return "null" if x is None else repr(x)


@dataclass(slots=True)
class StatusRecord:
    workload: str
    id: int
    state: str
    attempts: int = 0
    error: str | None = None
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    job: str | None = None
    #: the data's own id of the record (``rqp pack --id-field``), else None
    key: str | None = None
    #: re-runs of its chunk after a lost worker or VM: not attempts (``ChunkSpec.reruns``)
    reruns: int = 0

    def to_json(self) -> bytes:
        # formatted by hand: this runs several times per record on the hot path, and
        # dataclasses.asdict or a dict through json.dumps cost more than the encryption
        key = f',"key":{_str(self.key)}' if self.key is not None else ""
        if self.reruns:
            key += f',"reruns":{int(self.reruns)}'
        return (
            f'{{"workload":"{self.workload}","id":{self.id},"state":"{self.state}","attempts":{self.attempts},'
            f'"error":{_str(self.error)},"queued_at":{_num(self.queued_at)},"started_at":{_num(self.started_at)},'
            f'"finished_at":{_num(self.finished_at)},"worker":{_str(self.worker)},"job":{_str(self.job)}{key}}}'
        ).encode()

    @staticmethod
    def formatter(
        workload: str,
        state: str,
        queued_at: float | None,
        started_at: float | None,
        worker: str | None,
        job: str | None,
    ) -> Callable[[int, int, float | None], bytes]:
        """A fast ``to_json`` for many records of one chunk that differ only in id, attempts and
        finish time: the fixed parts are formatted once (byte-identical to ``to_json``)."""
        head = f'{{"workload":"{workload}","id":'
        mid = f',"state":"{state}","attempts":'
        tail = f',"error":null,"queued_at":{_num(queued_at)},"started_at":{_num(started_at)},"finished_at":'
        end = f',"worker":{_str(worker)},"job":{_str(job)}}}'

        def fmt(rid: int, attempts: int, finished_at: float | None) -> bytes:
            return f"{head}{rid}{mid}{attempts}{tail}{_num(finished_at)}{end}".encode()

        return fmt

    @classmethod
    def from_json(cls, raw: bytes) -> StatusRecord:
        return cls(**json.loads(raw))

    def seal(self, workload: Workload) -> bytes:
        return workload.seal("status", self.id, self.to_json())

    @classmethod
    def open(cls, workload: Workload, rid: int, sealed: bytes) -> StatusRecord:
        return cls.from_json(workload.open_sealed("status", rid, sealed))


@dataclass(frozen=True)
class ChunkNote:
    """A committed chunk's account of its done records, instead of a status record each: the
    chunk's runs (first id, count, attempt), the ids in them that are *not* done (those have
    status records of their own), and the fields every done record's status shares. One sealed
    note per chunk is what lets Redis keep a few bytes per record, whatever the workload's size."""

    chunk: str
    job: str
    runs: tuple[tuple[int, int, int], ...]
    not_done: tuple[int, ...]
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    worker: str | None
    #: the workload's round the chunk ran in (``rqp.ledger.Head``)
    round: int = 1
    #: the data's own ids of the records done, in ``done_ids()`` order (``rqp pack --id-field``)
    keys: tuple[str, ...] | None = None
    #: the chunk's part token (``ChunkSpec.part``): its results part is named with it
    part: str = ""

    def attempt_of(self, rid: int) -> int | None:
        for first, count, attempt in self.runs:
            if first <= rid < first + count:
                return attempt
        return None

    def did(self, rid: int) -> bool:
        return self.attempt_of(rid) is not None and rid not in self.not_done

    def key_of(self, rid: int) -> str | None:
        if not self.keys:
            return None
        for i, done in enumerate(self.done_ids()):
            if done == rid:
                return self.keys[i]
        return None

    def status(self, workload_id: str, rid: int) -> StatusRecord:
        attempt = self.attempt_of(rid) or 0
        return StatusRecord(
            workload_id,
            rid,
            DONE,
            attempt,
            None,
            self.queued_at,
            self.started_at,
            self.finished_at,
            self.worker,
            self.job,
            self.key_of(rid),
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {"c": self.chunk, "j": self.job, "r": self.runs, "x": self.not_done, "q": self.queued_at,
             "s": self.started_at, "f": self.finished_at, "w": self.worker, "g": self.round,
             **({"k": self.keys} if self.keys is not None else {}), **({"p": self.part} if self.part else {})},
            separators=(",", ":"),
        ).encode()  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes) -> ChunkNote:
        d = json.loads(raw)
        return cls(
            d["c"],
            d["j"],
            tuple(tuple(r) for r in d["r"]),
            tuple(d["x"]),
            d["q"],
            d["s"],
            d["f"],
            d["w"],
            int(d.get("g", 1)),
            tuple(d["k"]) if d.get("k") is not None else None,
            str(d.get("p", "")),
        )

    def done_ids(self) -> Iterator[int]:
        """The ids this chunk did, in order."""
        skip = set(self.not_done)
        for first, count, _attempt in self.runs:
            for rid in range(first, first + count):
                if rid not in skip:
                    yield rid

    def seal(self, workload: Workload) -> bytes:
        return workload.seal("note", self.chunk, self.to_json())

    @classmethod
    def open(cls, workload: Workload, chunk: str, sealed: bytes) -> ChunkNote:
        return cls.from_json(workload.open_sealed("note", chunk, sealed))


def seal_start(workload: Workload, jid: str, started_at: float, worker: str) -> bytes:
    """When and where job ``jid`` started: one sealed note per chunk, beside its lease."""
    return workload.seal("start", jid, json.dumps({"started_at": started_at, "worker": worker}).encode())


def record_status(r: redis.Redis, workload: Workload, rid: int) -> StatusRecord:
    """The status record of ``rid``: a done record's from its chunk's note, a failed or retrying
    one's as stored, a queued or processing one's derived from the chunk that holds it.
    ``WorkloadError`` when the record is not (yet) part of the workload."""
    ledger = Ledger(r, workload.id)
    for _ in range(2):  # a chunk may commit while we look: look again
        (done, failed), stored = _check_in_workload(ledger, rid), None
        if done:
            notes = [ChunkNote.open(workload, chunk, sealed) for chunk, sealed in ledger.notes_for(rid)]
            did = [n for n in notes if n.did(rid)]
            if did:
                return max(did, key=lambda n: n.round).status(workload.id, rid)  # the latest round's
            raise WorkloadError(
                f"record {rid} of workload {workload.id} is done but its chunk's note has expired or was deleted"
            )
        sealed_status = ledger.status(rid)
        if sealed_status is not None:
            stored = StatusRecord.open(workload, rid, sealed_status)
            if stored.state == FAILED:
                return stored  # final
            if failed:
                # failed for good, but the status shows an earlier attempt: an old ciphertext put
                # back over the final one
                raise IntegrityError(
                    f"Redis state of {workload.id} failed authentication: record {rid} is marked failed but its "
                    f"status record says {stored.state!r} (attempt {stored.attempts}): an earlier status was put back"
                )
        found = _find_chunk(ledger, workload, rid)
        if found is not None:
            jid, spec, attempt = found
            start = ledger.start_note(jid)
            if start is not None:
                info = json.loads(workload.open_sealed("start", jid, start))
                return StatusRecord(
                    workload.id,
                    rid,
                    PROCESSING,
                    attempt,
                    None,
                    spec.queued_at,
                    info["started_at"],
                    None,
                    info["worker"],
                    jid,
                )
            if stored is not None:  # queued again for a retry: the stored record has the last error
                stored.job = jid
                return stored
            return StatusRecord(workload.id, rid, QUEUED, attempt - 1, None, spec.queued_at, job=jid)
        if stored is not None:
            return stored  # waiting out its retry backoff
    return StatusRecord(workload.id, rid, QUEUED, 0)


def _check_in_workload(ledger: Ledger, rid: int) -> tuple[bool, bool]:
    """Whether ``rid`` is done, and failed; ``WorkloadError`` when it is not part of the workload (yet)."""
    workload_id = ledger.id
    enqueued, total, done, failed = ledger.record_facts(rid)
    if enqueued is None:
        raise WorkloadError(
            f"workload {workload_id} is not known to Redis; schedule it first (rqp-scheduler run {workload_id})"
        )
    if total is not None and rid >= total:
        raise WorkloadError(
            f"workload {workload_id} has {total:,} records (ids 0-{total - 1}); there is no record {rid}"
        )
    if rid >= enqueued and not (done or failed):
        raise WorkloadError(
            f"record {rid} of workload {workload_id} is not queued yet: the scheduler has queued {enqueued:,} records so far"
        )
    if failed and ledger.status(rid) is None:
        raise WorkloadError(
            f"record {rid} of workload {workload_id} is failed but its status record has expired or was deleted"
        )
    return done, failed


def _find_chunk(ledger: Ledger, workload: Workload, rid: int) -> tuple[str, ChunkSpec, int] | None:
    """(job id, spec, attempt) of the in-flight chunk that holds ``rid``; one window of specs."""
    from .jobs import open_spec  # noqa: PLC0415 - RQ's import (~15 ms) only where a spec is opened

    for jid, spec_sealed in ledger.specs():
        try:
            spec = open_spec(workload, jid, spec_sealed)
        except ForbiddenJobError:
            continue
        for first, count, attempt in spec.runs:
            if first <= rid < first + count:
                return jid, spec, attempt
    return None


@dataclass
class Progress:
    """Counts by state and rates; computed from bitmaps and counters, no decryption needed.

    ``total`` is None while the scheduler is still reading the data (only ``enqueued`` is known);
    ``processing`` counts the records of the chunks workers hold, not tasks running at once;
    ``queued`` is what waits for a worker (neither finished, in a chunk being processed, nor
    waiting out a retry's backoff). The rate is the run's throughput as ``rqp.throughput`` defines
    it for every place that shows one: records processed (attempts included) over the time the
    processors were at it in this run -- from the first chunk's start to the last commit -- so time
    before a worker came, after the last one left, or between runs does not dilute it; an ended
    workload's is its sealed summary's. While the data is read, ``read_bytes`` of ``data_bytes``
    tell how far the reading got."""

    workload: str
    state: str
    total: int | None
    enqueued: int
    done: int
    failed: int
    processing: int
    retrying: int
    started_at: float | None
    finished_at: float | None
    processed_seconds: float
    error: str | None = None
    #: the format the workload was packed with (jsonl, csv, script)
    format: str | None = None
    #: records processed (every attempt), and when the first processed chunk began and the last committed
    processed: int = 0
    first_at: float | None = None
    last_at: float | None = None
    #: None while the workload runs (live counters drive progress); True once it ended and the
    #: counts are its sealed summary's; False when it ended but the summary could not be read
    #: here (no KEK): the counts are Redis's own, unverified, and never make a success exit
    verified: bool | None = None
    #: why an ended workload's sealed counts are still not verified: no sealed head in Redis
    #: confirms their round is the current one (``rqp.round_marker.round_note``); "" otherwise
    round_note: str = ""
    #: records that never ran (a cancelled workload), from the sealed summary
    never_ran: int = 0
    #: plain bytes of the data the scheduler has read so far, and the data's size (None: not known)
    read_bytes: int | None = None
    data_bytes: int | None = None
    #: an ended workload's throughput from its sealed summary (the figure its scheduler logged)
    summary_rate: float | None = None
    #: records requeued after a preemption or drain (``rqp.ledger.PREEMPTED``): not attempts
    preempted: int = 0
    #: what an ended workload cost, by VM, from its sealed summary (``vm_costs``): the console's rows
    vms: list[dict[str, Any]] = field(default_factory=list)

    @property
    def queued(self) -> int:
        return max(0, self.enqueued - self.done - self.failed - self.processing - self.retrying)

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def reading(self) -> bool:
        """The scheduler has not read the data to its end yet: the total is unknown."""
        return self.total is None

    @property
    def fraction(self) -> float | None:
        """Finished records of the total; None while the total is unknown."""
        if self.total is None:
            return None
        return min(1.0, self.finished / self.total) if self.total else 1.0

    @property
    def elapsed(self) -> float:
        if not self.started_at:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at

    @property
    def rate(self) -> float:
        """Records/s of this run (``rqp.throughput``): the sealed summary's once it ended."""
        if self.summary_rate is not None:
            return self.summary_rate
        return records_per_second(self.processed, self.first_at, self.last_at)

    @property
    def read_fraction(self) -> float | None:
        """How much of the data has been read, while it is (None once the total is known, or
        when the sizes are not)."""
        return read_fraction(self.read_bytes, self.data_bytes) if self.reading else None

    @property
    def eta(self) -> float | None:
        """Seconds to the end: the records left at this run's rate; while the data is read, the
        later of that (for the total the bytes read so far promise) and the end of the reading
        at its pace so far. None when neither can be told yet."""
        rate = self.rate
        if self.total is not None:
            return max(0.0, (self.total - self.finished) / rate) if rate > 0 else None
        fraction = self.read_fraction
        if fraction is None or fraction <= 0:
            return None
        guesses = []
        total = estimated_total(self.enqueued, fraction)
        if total is not None and rate > 0:
            guesses.append(max(0.0, (total - self.finished) / rate))
        if self.elapsed > 0:
            guesses.append(self.elapsed * (1 - fraction) / fraction)
        return max(guesses) if guesses else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            queued=self.queued, elapsed=round(self.elapsed, 3), rate=round(self.rate, 1), eta=self.eta,
            read_fraction=self.read_fraction,
        )  # fmt: skip
        return d


#: the states in which a workload has ended (and its report must come from the sealed summary)
ENDED = ("done", "cancelled")


def verified_progress(p: Progress, summary: Callable[[], Summary | None]) -> Progress:
    """``p`` with an ended workload's counts taken from its sealed summary (``summary()``: the
    authenticated summary, or None when it cannot be read here). A Redis writer can move the plain
    counters and the shown state; it cannot move these. A shown state of done or cancelled without
    a summary that says so is reported as unverified."""
    if p.state not in ENDED:
        return p
    s = summary()
    if s is None:
        return replace(p, verified=False)
    return replace(
        p,
        state=s.final_state,
        total=s.total,
        done=s.done,
        failed=s.failed,
        processing=0,
        retrying=0,
        enqueued=s.total,
        never_ran=s.cancelled,
        verified=True,
        summary_rate=s.records_per_second,
        preempted=s.requeued_after_preemption,
        vms=vm_costs(s),
    )


def vm_costs(s: Summary) -> list[dict[str, Any]]:
    """What the run cost by VM, as the summary seals it and the console shows it: per VM (host
    name when its processor named none), processor-seconds its workers spent on committed chunks,
    whether it was Spot ("spot", "regular", "" unknown) and the seconds its drains lost."""
    return [
        {
            "host": h,
            "seconds": s.processor_seconds_by_vm.get(h, 0.0),
            "priority": s.vm_priority.get(h, ""),
            "drained_seconds": s.drained_seconds_by_vm.get(h, 0.0),
        }
        for h in sorted({*s.processor_seconds_by_vm, *s.drained_seconds_by_vm})
    ]


def _number(value: str | bytes | None, kind: type[float] | type[int]) -> float | int | None:
    """A counter or time as Redis holds it; junk a Redis writer left reads as missing (the
    report of an ended workload comes from its sealed summary anyway)."""
    if value is None or value == "":
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if kind is int or math.isfinite(number) else None


def plain_float(value: str | bytes | None, default: float) -> float:
    """A plain (advisory) time or count from Redis, ``default`` when missing or junk."""
    number = _number(value, float)
    return default if number is None else float(number)


def read_progress(r: redis.Redis, workload_id: str) -> Progress | None:
    return progress_of(workload_id, Ledger(r, workload_id).snapshot())


def progress_of(workload_id: str, snap: Snapshot) -> Progress | None:
    """``Progress`` from a ``Ledger.snapshot`` (the console reads one and shows the same rate,
    ETA and reading progress as ``rqp status``); None when Redis does not know the workload."""
    m, p = snap["meta"], snap["perf"]
    if not m:
        return None
    total = _number(m.get(Meta.TOTAL), int)
    return Progress(
        workload=workload_id,
        state=m.get(Meta.STATE, "?"),
        total=int(total) if total else None,
        enqueued=int(_number(m.get(Meta.ENQUEUED), int) or 0),
        done=snap["done"],
        failed=snap["failed"],
        processing=snap["processing"],
        retrying=snap["retrying"],
        started_at=_number(m.get(Meta.STARTED_AT), float),
        finished_at=_number(m.get(Meta.FINISHED_AT), float),
        processed_seconds=float(_number(p.get(Perf.SECONDS), float) or 0.0),
        error=m.get(Meta.ERROR),
        format=m.get(Meta.FORMAT),
        processed=int(_number(p.get(Perf.RECORDS), int) or 0),
        first_at=_number(p.get(PERF_FIRST), float),
        last_at=_number(p.get(Perf.LAST), float),
        read_bytes=_bytes(m.get(Meta.READ_BYTES)),
        data_bytes=_bytes(m.get(Meta.DATA_BYTES)),
        preempted=preempted(m.get(PREEMPTED)),
    )


def _bytes(value: str | None) -> int | None:
    """A byte count from a plain field: junk or a negative number reads as missing."""
    number = _number(value, int)
    return int(number) if number is not None and number >= 0 else None


def refusal_shown(r: redis.Redis, store: BlobStore, workload_id: str) -> Refusal | None:
    """The scheduler's refusal of ``workload_id`` (``rqp.ledger.Refusal``), to show for a workload
    Redis holds no state of (the caller checks: a workload that started shows its own state, so
    a forged refusal never hides one). Not shown once the workload was re-packed since (the
    manifest in the blob store is not the one refused). Plain in Redis: say it is unverified."""
    refusal = read_refusal(r, workload_id)
    if refusal is None or refusal.manifest is None:
        return refusal
    try:
        now = manifest_sha256(store.get(blob_name(workload_id, "manifest.json")))
    except (RqpError, ValueError):
        now = None
    return refusal if now == refusal.manifest else None
