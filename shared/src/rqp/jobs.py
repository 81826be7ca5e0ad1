"""RQ jobs the rqp way: one job carries a chunk of records, its spec sealed, nothing executable.

RQ stores a job as ``(func_name, instance, args, kwargs)``. rqp writes only
``(ENTRY_POINT, None, [workload, sealed_spec], {})`` with a JSON serializer, and its job class
refuses to import any callable named in Redis -- the processor runs its own entry point and
nothing else, and RQ never unpickles anything. The spec (which records, which attempt) is sealed
with the workload's data key and bound to the job id, so a job forged, altered or replayed from
another workload fails to open before any user code runs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any

from rq.exceptions import DeserializationError
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.utils import as_text, current_timestamp

if TYPE_CHECKING:
    from redis.client import Pipeline

from .errors import ForbiddenJobError, IntegrityError
from .records import line_of
from .workload import Workload

__all__ = ["ENTRY_POINT", "JOB_TIMEOUT", "PART_FORM", "ChunkSpec", "JSONSerializer", "RqpJob", "open_spec", "seal_spec"]

#: the label every rqp job carries; a job naming anything else is rejected
ENTRY_POINT = "rqp.chunk"
#: what a job whose payload is not rqp's JSON names instead of a callable
NOT_RQP = "<not an rqp job>"
#: RQ's own per-job timeout; chunks are sized to take well under a second
JOB_TIMEOUT = 3600
#: the newest results part form this version's consolidation reads (``rqp.parts``: 2, groups of
#: results one AES-GCM value each). A scheduler's specs carry it, and a processor writes that form
#: and no newer: a spec without it (an older scheduler's) gets parts of form 1, one value per
#: result, which every version reads -- processors can be upgraded before the scheduler
PART_FORM = 2


class JSONSerializer:
    """RQ serializer with no pickle: job data and results are JSON."""

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), default=str).encode()

    @staticmethod
    def loads(data: bytes) -> Any:
        return json.loads(data)


class PipelinedExecutions(ExecutionRegistry):
    """RQ's registry of one job's executions, read in two round trips whatever it holds: RQ drops
    the expired ones, reads the ids, then each execution's hash, one round trip each -- and it
    reads them twice as it deletes a finished job (issue 28: RQ's round trips per chunk). The same
    commands and the same result (an execution whose hash is gone raises ``ValueError``, as RQ's
    ``Execution.fetch`` does). While ``job`` is being deleted, the whole registry is read once."""

    def __init__(self, job_id: str, connection: Any, job: RqpJob | None = None) -> None:
        super().__init__(job_id, connection)
        self.job = job

    def get_executions(self, start: int = 0, end: int = -1) -> list[Execution]:
        job = self.job
        whole = (start, end) == (0, -1)
        if whole and job is not None and job._executions_read is not None:
            return list(job._executions_read)
        executions = self._read(start, end)
        if whole and job is not None and job._deleting:
            job._executions_read = list(executions)
        return executions

    def _read(self, start: int, end: int) -> list[Execution]:
        pipe = self.connection.pipeline(transaction=False)
        pipe.zremrangebyscore(self.key, 0, current_timestamp())
        pipe.zrange(self.key, start, end)
        ids = pipe.execute()[1]
        if not ids:
            return []
        executions = [Execution(id=as_text(i), job_id=self.job_id, connection=self.connection) for i in ids]
        pipe = self.connection.pipeline(transaction=False)
        for execution in executions:
            pipe.hgetall(execution.key)
        for execution, data in zip(executions, pipe.execute(), strict=True):
            if not data:
                raise ValueError(f"Execution {execution.id} not found in Redis")
            execution.restore(data)
        return executions


class RqpJob(Job):
    """An RQ job that cannot name code. ``entry`` is set by the processor to its own function."""

    #: ``entry(workload_id, sealed_spec)``, returning the job's JSON result
    entry: Callable[[str, str], object] | None = None
    #: set while ``delete`` runs: its executions, read once for both of RQ's reads
    _deleting = False
    _executions_read: list[Execution] | None = None
    #: read ahead by ``read_for_delete`` (the worker's success path), for the ``delete`` that follows
    _status_ahead: JobStatus | None = None
    #: ``read_for_delete`` found the job's hash gone or its status junk (a Redis writer, mid-run)
    record_lost = False
    _executions_ahead: list[Execution] | None = None

    def _deserialize_data(self) -> None:
        # JSON only: a payload that is not rqp's JSON (a pickle, garbage) is never handed to any
        # other deserializer; the job is marked as not rqp's and ``func`` rejects it
        try:
            super()._deserialize_data()
        except DeserializationError:
            self._func_name, self._instance, self._args, self._kwargs = NOT_RQP, None, [], {}

    def rejection(self) -> str | None:
        """Why this job is not an rqp job, or None when it has the shape of one."""
        name = self.func_name
        if name == NOT_RQP:
            return f"job {self.id} carries a payload that is not an rqp job (not rqp's JSON: a pickle or garbage); it was not deserialized; rejected before any user code ran"
        if name != ENTRY_POINT or self.instance is not None:
            return f"job {self.id} names callable {name!r}; rqp runs only its own entry point; rejected before any user code ran"
        args = self.args
        if self.kwargs or not (
            isinstance(args, (list, tuple)) and len(args) == 2 and all(isinstance(a, str) for a in args)
        ):
            return f"job {self.id} does not carry rqp's (workload, sealed spec) arguments; rejected before any user code ran"
        return None

    def on_reject(self, reason: str) -> None:
        """Called before a rejected job raises; the processor records it in ``rqp:rejected``."""

    @property
    def execution_registry(self) -> ExecutionRegistry:
        return PipelinedExecutions(self.id, self.connection, self)

    def delete(
        self, pipeline: Pipeline | None = None, remove_from_queue: bool = True, delete_dependents: bool = False
    ) -> None:
        """RQ's delete, the job's executions read once: RQ reads them to take them out of the
        started registry, then again to delete them (the writes of both go into ``pipeline``);
        with ``read_for_delete`` before it, not at all here."""
        self._deleting, self._executions_read = True, self._executions_ahead
        try:
            super().delete(pipeline=pipeline, remove_from_queue=remove_from_queue, delete_dependents=delete_dependents)
        finally:
            self._deleting, self._executions_read = False, None
            self._status_ahead, self._executions_ahead = None, None

    def read_for_delete(self, execution: Execution) -> None:
        """Read in one round trip what RQ's ``delete`` of this job reads in four (its stored status;
        its executions: the expired dropped, the ids, each one's hash), for the ``delete`` that
        follows: the worker's success path (issue 28: RQ's round trips per chunk). When the job
        has any execution but ``execution`` (this worker's), those are read as RQ reads them. The
        same commands, the same end state; a status or an execution gone from Redis is left to
        RQ's own reads, which fail as they always did."""
        registry = PipelinedExecutions(self.id, self.connection, self)
        pipe = self.connection.pipeline(transaction=False)
        pipe.hget(self.key, "status")
        pipe.zremrangebyscore(registry.key, 0, current_timestamp())
        pipe.zrange(registry.key, 0, -1)
        pipe.hgetall(execution.key)
        status, _dropped, ids, data = pipe.execute()
        if [as_text(i) for i in ids] == [execution.id] and data:
            mine = Execution(id=execution.id, job_id=self.id, connection=self.connection)
            mine.restore(data)
            self._executions_ahead = [mine]
        else:
            self._executions_ahead = registry._read(0, -1)  # another worker's too (or none): RQ's reads
        try:
            self._status_ahead = JobStatus(as_text(status)) if status else None
        except ValueError:  # not one of RQ's: junk a Redis writer put there
            self._status_ahead = None
        self.record_lost = self._status_ahead is None

    def forget_reads(self) -> None:
        """Drop what ``read_for_delete`` read (the ``delete`` it was for did not run)."""
        self._status_ahead, self._executions_ahead, self.record_lost = None, None, False

    def _fetch_status(self) -> JobStatus:
        """RQ reads the stored status as it deletes a job: read ahead by ``read_for_delete`` when set.
        A job whose hash was deleted (or its status junked) while it ran reads as "started", what
        this worker made it: RQ's read would raise, and its failure path would file the job as
        failed -- re-creating the hash, a traceback in the log -- for a chunk that committed (the
        twelfth review, F3). rqp's ledger, not RQ's hash, says what became of the chunk."""
        ahead = self._status_ahead
        if ahead is not None:
            return ahead
        return JobStatus.STARTED if self.record_lost else super()._fetch_status()

    @property
    def func(self):
        reason = self.rejection()
        if reason is not None:
            self.on_reject(reason)
            raise ForbiddenJobError(reason)
        if type(self).entry is None:
            raise ForbiddenJobError("this process does not execute rqp jobs")
        return type(self).entry

    # RQ resolves callbacks by name from the job hash; a Redis writer could name any function.
    @property
    def success_callback(self):
        return None

    @property
    def failure_callback(self):
        return None

    @property
    def stopped_callback(self):
        return None

    # RQ calls every URL listed in the job hash's ``webhooks`` when a job ends; rqp jobs call none.
    def send_webhooks(self, status: str | JobStatus, *, exc_string: str | None = None) -> None:
        return None


@dataclass(frozen=True)
class ChunkSpec:
    workload: str
    chunk: str
    #: runs of consecutive record ids: (first id, count, attempt number)
    runs: tuple[tuple[int, int, int], ...]
    max_attempts: int
    backoff: float
    backoff_max: float
    #: when the chunk was queued, for the status records
    queued_at: float | None = None
    #: the workload's round (``rqp.ledger.Head``): 1, and one more for each ``rqp retry``
    round: int = 1
    #: the data's own id of each record, in ``records()`` order (``rqp pack --id-field``)
    keys: tuple[str, ...] | None = None
    #: JSON Lines data chunks with blank lines among them: (record id, its line) change points
    #: (``rqp.records.LineMap.within``); none means record ``rid`` is on line ``rid + 1``
    lines: tuple[tuple[int, int], ...] | None = None
    #: times the chunk was re-run because its worker or VM was lost (killed, crashed, its RQ job
    #: lost with Redis): not an attempt of its records, which did not fail (issue #24 item 26)
    reruns: int = 0
    #: a token the scheduler draws for this chunk, in its results part's name (``rqp.parts.part_name``):
    #: two schedulers on either side of a Redis split brain number their chunks alike, and a
    #: part of one side's chunk overwrote the other's under the same name ("" in older specs)
    part: str = ""
    #: the results part form the scheduler that queued this chunk reads (``PART_FORM``; 1 in an
    #: older scheduler's spec, which does not say)
    part_form: int = PART_FORM

    @property
    def size(self) -> int:
        return sum(n for _s, n, _a in self.runs)

    def records(self) -> list[tuple[int, int]]:
        """(record id, attempt) pairs (built a run at a time, no Python step per record)."""
        out: list[tuple[int, int]] = []
        for s, n, a in self.runs:
            out += zip(range(s, s + n), repeat(a, n), strict=True)
        return out

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "w": self.workload,
                "c": self.chunk,
                "r": self.runs,
                "m": self.max_attempts,
                "b": self.backoff,
                "bm": self.backoff_max,
                "q": self.queued_at,
                "g": self.round,
                **({"k": self.keys} if self.keys is not None else {}),
                **({"l": self.lines} if self.lines else {}),
                **({"x": self.reruns} if self.reruns else {}),
                **({"p": self.part} if self.part else {}),
                **({"pf": self.part_form} if self.part_form != 1 else {}),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ChunkSpec:
        d = json.loads(raw)
        keys = d.get("k")
        lines = d.get("l")
        return cls(
            d["w"], d["c"], tuple(tuple(r) for r in d["r"]), d["m"], d["b"], d["bm"], d.get("q"), int(d.get("g", 1)),
            tuple(str(k) for k in keys) if keys is not None else None,
            tuple((int(a), int(b)) for a, b in lines) if lines else None,
            int(d.get("x", 0)), str(d.get("p", "")), int(d.get("pf", 1)),
        )  # fmt: skip

    def line_of(self, rid: int) -> int:
        """The line of a JSON Lines data chunk's record ``rid`` in the data file."""
        return line_of(self.lines or (), rid)

    def key_of(self) -> dict[int, str]:
        """Record id -> the data's own id (empty without ``--id-field``)."""
        return dict(zip((rid for rid, _ in self.records()), self.keys, strict=True)) if self.keys else {}


def runs_of(records: list[tuple[int, int]]) -> tuple[tuple[int, int, int], ...]:
    """Compress sorted (id, attempt) pairs into runs."""
    if records:
        # the usual chunk: consecutive ids of one attempt, told apart from the rest with
        # comprehensions instead of a Python step per record
        first, attempt = records[0]
        n = len(records)
        if records[-1][0] == first + n - 1:
            ids, attempts = zip(*records, strict=True)
            if ids == tuple(range(first, first + n)) and attempts.count(attempt) == n:
                return ((first, n, attempt),)
    runs: list[list[int]] = []
    for rid, att in sorted(records):
        if runs and runs[-1][0] + runs[-1][1] == rid and runs[-1][2] == att:
            runs[-1][1] += 1
        else:
            runs.append([rid, 1, att])
    return tuple(tuple(r) for r in runs)  # type: ignore[misc]


def seal_spec(workload: Workload, jid: str, spec: ChunkSpec) -> bytes:
    return workload.seal("job", jid, spec.to_json())


def open_spec(workload: Workload, jid: str, sealed: bytes | str) -> ChunkSpec:
    """Authenticate and decode; ``ForbiddenJobError`` names the job when it is not rqp's."""
    try:
        raw = base64.b64decode(sealed) if isinstance(sealed, str) else sealed
        spec = ChunkSpec.from_json(workload.open_sealed("job", jid, raw))
    except (IntegrityError, ValueError, KeyError, TypeError):
        raise ForbiddenJobError(
            f"job {jid} was not created by rqp's scheduler for workload {workload.id} (forged, altered or replayed); rejected before any user code ran"
        ) from None
    if spec.workload != workload.id:
        raise ForbiddenJobError(
            f"job {jid} names workload {spec.workload} inside but was queued for {workload.id}; rejected"
        )
    return spec
