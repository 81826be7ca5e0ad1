"""How rqp's values are spelled in Redis: job ids, chunk names, retry members, result-part
references, the fields of a workload's hashes, and the packed arguments of the Lua scripts.

Every string that two roles exchange through Redis is built and parsed here, and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from ..errors import IntegrityError

if TYPE_CHECKING:  # rqp.workload imports the ledger (for ``PAIR``): a runtime import would be a cycle
    from ..workload import Workload

__all__ = [
    "PAIR",
    "ChunkKind",
    "Control",
    "Counters",
    "Head",
    "JobId",
    "Meta",
    "PartRef",
    "Perf",
    "Priority",
    "RetryEntry",
    "State",
    "chunk_name",
    "decode_pin",
    "encode_pin",
    "job_id",
    "join_ids",
    "join_runs",
    "join_spans",
    "keyed_result",
    "note_field",
    "pack_values",
    "parse_job_id",
    "parse_note_field",
    "queue_names",
    "split_keyed_result",
    "unpack_values",
]


class ChunkKind(StrEnum):
    """A chunk of the data in order (``c00000042``), or of records due for a retry (``r00000007``)."""

    DATA = "c"
    RETRY = "r"

    @classmethod
    def of(cls, chunk: str) -> ChunkKind:
        return cls(chunk[:1])


def chunk_name(kind: ChunkKind, seq: int) -> str:
    return f"{kind.value}{seq:08d}"


@dataclass(frozen=True)
class JobId:
    """An RQ job id: ``rqp-<workload>-<chunk>-<generation>``. The generation counts re-runs of a
    chunk (a reclaimed chunk is queued again as generation + 1)."""

    workload: str
    chunk: str
    gen: int

    def __str__(self) -> str:
        return f"rqp-{self.workload}-{self.chunk}-{self.gen}"

    @classmethod
    def parse(cls, jid: str) -> JobId:
        """``ValueError`` for anything rqp did not make."""
        head, chunk, gen = jid.rsplit("-", 2)
        if not head.startswith("rqp-") or chunk[:1] not in ("c", "r") or not gen.isdigit():
            raise ValueError(f"not an rqp job id: {jid!r}")
        return cls(head[4:], chunk, int(gen))

    def next(self) -> JobId:
        return JobId(self.workload, self.chunk, self.gen + 1)


def job_id(workload_id: str, chunk: str, gen: int) -> str:
    return str(JobId(workload_id, chunk, gen))


def parse_job_id(jid: str) -> tuple[str, str, int]:
    j = JobId.parse(jid)
    return j.workload, j.chunk, j.gen


@dataclass(frozen=True)
class RetryEntry:
    """A record waiting out its backoff: the zset member ``"<record>:<attempt>"``, scored by when
    it is due. ``attempt`` is the attempt it will be run as."""

    rid: int
    attempt: int
    due: float = 0.0

    @property
    def member(self) -> str:
        return f"{self.rid}:{self.attempt}"

    @classmethod
    def parse(cls, member: bytes | str, due: float = 0.0) -> RetryEntry:
        text = member.decode(errors="replace") if isinstance(member, bytes) else member
        rid, attempt = text.split(":")
        return cls(int(rid), int(attempt), due)


@dataclass(frozen=True)
class PartRef:
    """The result part a chunk's commit names: its blob and the record ids it covers (a data
    chunk covers ``first..last``; a retry chunk's records are scattered: -1, -1)."""

    name: str
    first: int = -1
    last: int = -1

    def encode(self) -> str:
        return f"{self.name}|{self.first}|{self.last}"

    @classmethod
    def parse(cls, value: bytes | str) -> PartRef:
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        name, first, last = text.rsplit("|", 2)
        return cls(name, int(first), int(last))


class State(StrEnum):
    RUNNING = "running"
    #: an operator paused it: nothing new is queued, chunks in hand finish (``rqp pause``)
    PAUSED = "paused"
    #: an operator cancelled it: nothing new runs; once the chunks in hand finish, what was
    #: done is consolidated and it ends ``cancelled`` (``rqp cancel``)
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    CONSOLIDATING = "consolidating"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (State.DONE, State.FAILED, State.CANCELLED)


class Priority(StrEnum):
    """A workload's priority: its chunks go to the RQ queue of that priority, and every worker
    takes from the high queue first, then normal, then low (``queue_names``). Within one
    priority, workloads share the workers: each keeps only its window of chunks queued."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    def queue(self, base: str) -> str:
        """The RQ queue of this priority for the deployment's queue ``base`` (RQP_RQ_QUEUE)."""
        return base if self is Priority.NORMAL else f"{base}-{self.value}"


def queue_names(base: str) -> list[str]:
    """The RQ queues a worker listens to, in the order it takes from them."""
    return [p.queue(base) for p in (Priority.HIGH, Priority.NORMAL, Priority.LOW)]


class Control(StrEnum):
    """What an operator asked of a running workload (meta field ``control``)."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


class Meta:
    """Fields of the hash ``rqp:w:W:meta``."""

    STATE = "state"
    STARTED_AT = "started_at"
    FINISHED_AT = "finished_at"
    ENQUEUED = "enqueued"
    CHUNKS = "chunks"
    TOTAL = "total"
    RETRY_SEQ = "retry_seq"
    FORMAT = "format"
    SCHEDULER = "scheduler"
    MAX_ATTEMPTS = "max_attempts"
    PIN = "pin"
    SIGNER = "signer"
    ERROR = "error"
    ERROR_SEALED = "error_sealed"
    PROCESSOR_ERROR = "processor_error"
    RECLAIMED = "reclaimed"
    RESULTS_SHA256 = "results_sha256"
    CONTROL = "control"
    PRIORITY = "priority"
    #: the sealed ``Head`` (base64): what the plain ``enqueued``/``chunks``/``total`` only show
    HEAD = "head"
    #: plain bytes of the data the scheduler has read so far, and the data's size (the signed
    #: manifest's): progress while the total is unknown (``rqp.throughput``)
    READ_BYTES = "read_bytes"
    DATA_BYTES = "data_bytes"
    #: the supervising scheduler's sealed beat counter (``rqp_scheduler.run.rollback``): lower
    #: than the scheduler last wrote means Redis lost writes (a rollback or a failover)
    BEAT = "beat"


@dataclass(frozen=True)
class Head:
    """The enqueue's progress as the scheduler sealed it, in the same transaction as the chunks
    it counts: records and chunks queued, the record count once the data is read to its end,
    and the round (a workload run again by ``rqp retry`` starts a new one; ``closed`` once its
    summary is written). Redis also holds the counts in plain fields for anyone to read; rqp
    acts only on these, so a Redis writer who edits the plain ones changes a progress bar,
    never what is enqueued, when a workload is finished or how many records its summary has."""

    enqueued: int = 0
    chunks: int = 0
    total: int | None = None
    round: int = 1
    closed: bool = False

    def advanced(self, records: int, chunks: int, total: int | None) -> Head:
        return replace(self, enqueued=self.enqueued + records, chunks=self.chunks + chunks, total=total)

    def to_json(self) -> bytes:
        return json.dumps(
            {"e": self.enqueued, "c": self.chunks, "t": self.total, "g": self.round, "x": self.closed},
            separators=(",", ":"),
        ).encode()

    def seal(self, workload: Workload) -> str:
        return base64.b64encode(workload.seal("head", "", self.to_json())).decode()

    @classmethod
    def open(cls, workload: Workload, value: bytes | str | None) -> Head:
        """``IntegrityError`` (from the workload) when ``value`` is not a head it sealed; a missing
        head is not one either."""
        sealed = decode_pin(value)
        d = json.loads(workload.open_sealed("head", "", sealed if sealed is not None else b""))
        return cls(int(d["e"]), int(d["c"]), d["t"], int(d["g"]), bool(d["x"]))


class Counters:
    """Fields of the hash ``rqp:w:W:n``: live counters and what the chunks in flight started with."""

    PROCESSING = "processing"
    #: records done and failed so far (the bitmaps' counts, kept in step with them)
    DONE = "done"
    FAILED = "failed"

    @staticmethod
    def size(jid: str) -> str:
        """How many records job ``jid`` started with (added to ``processing`` once)."""
        return f"j:{jid}"

    @staticmethod
    def start(jid: str) -> str:
        """The sealed note of when and where ``jid`` started."""
        return f"s:{jid}"

    @staticmethod
    def abandoned(jid: str) -> str:
        """Why the worker holding ``jid`` gave it up (its error), for the records' status."""
        return f"e:{jid}"

    @staticmethod
    def released(jid: str) -> str:
        """Set when a processor that cannot open the workload handed ``jid`` back untouched."""
        return f"r:{jid}"


class Perf:
    """Fields of the hash ``rqp:w:W:perf``."""

    RECORDS = "records"
    SECONDS = "seconds"
    LAST = "last"
    #: CPU seconds the script hosts spent, and the records of the chunks that measured it (a
    #: chunk whose host could not be measured adds to neither): chunk sizes by the script's CPU
    CPU = "cpu"
    CPU_RECORDS = "cpu_records"


#: the header of one packed value for the scripts' ``hset_packed``: record id, length
PAIR = struct.Struct(">II")


def pack_values(pairs: list[tuple[int, bytes]]) -> bytes:
    """(id, value) pairs as one blob for the scripts' ``hset_packed``."""
    return b"".join([PAIR.pack(i, len(v)) + v for i, v in pairs])


def unpack_values(blob: bytes) -> dict[int, bytes]:
    """What ``pack_values`` packed."""
    out: dict[int, bytes] = {}
    pos, end = 0, len(blob)
    unpack = PAIR.unpack_from
    while pos < end:
        if pos + PAIR.size > end:
            raise IntegrityError("a packed value in Redis is truncated or not rqp's (written behind rqp's back)")
        rid, n = unpack(blob, pos)
        pos += PAIR.size
        if pos + n > end:
            raise IntegrityError("a packed value in Redis is truncated or not rqp's (written behind rqp's back)")
        out[rid] = blob[pos : pos + n]
        pos += n
    return out


def keyed_result(key: str, result: bytes) -> bytes:
    """A result with the data's own id (``rqp pack --id-field``): the id as JSON, a tab, the result.
    JSON never holds a raw tab, so the first tab is the separator."""
    return json.dumps(key).encode() + b"\t" + result


def split_keyed_result(value: bytes) -> tuple[bytes, bytes]:
    """What ``keyed_result`` joined: (the id as JSON, the result)."""
    key, _, result = value.partition(b"\t")
    return key, result


def join_runs(ids: list[int]) -> str:
    """Sorted record ids as the scripts take consecutive runs: ``"first-last,..."``."""
    parts: list[str] = []
    i, n = 0, len(ids)
    while i < n:
        j = i
        while j + 1 < n and ids[j + 1] == ids[j] + 1:
            j += 1
        parts.append(f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(parts)


def note_field(chunk: str, first: int, last: int) -> str:
    """A chunk note's field: its chunk and, for a data chunk, the range of record ids it covers
    (-1, -1 for a retry chunk), so a record's note is found without decrypting the others."""
    return f"{chunk}|{first}|{last}"


def parse_note_field(field: str) -> tuple[str, int, int]:
    chunk, first, last = field.rsplit("|", 2)
    return chunk, int(first), int(last)


def join_spans(runs: tuple[tuple[int, int, int], ...] | list[tuple[int, int, int]]) -> str:
    """A chunk spec's runs (first id, count, attempt) as the scripts take ranges: ``"first-last,..."``."""
    return ",".join(f"{first}-{first + count - 1}" for first, count, _ in runs)


def join_ids(ids: list[int]) -> str:
    """Record ids as the scripts take them: one comma-separated string."""
    return ",".join(map(str, ids))


def encode_pin(sealed: bytes) -> str:
    return base64.b64encode(sealed).decode()


def decode_pin(raw: bytes | str | None) -> bytes | None:
    """The sealed pin, None when there is none, or b"" for a value that is not base64."""
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return b""


def text(value: object) -> str | None:
    """A Redis reply as text (clients may be set to decode replies or not). Bytes that are not
    UTF-8 -- which only a Redis writer behind rqp's back can leave -- read with U+FFFD in their
    place: never an exception in a role or a report; an id read so names no workload, a number so
    reads as junk, and the value that decides anything is sealed anyway."""
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def raw(value: object) -> bytes | None:
    """A Redis reply as bytes."""
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode()
