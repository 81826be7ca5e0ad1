"""Where rqp keeps things in Redis. One place, so scheduler, processor and CLI agree.

Per workload W (prefix ``rqp:w:W:``):

=========  ======  ==========================================================================
meta       hash    state, counters, timings, settings the workload was scheduled with, and
                   ``pin``: the workload's content digest sealed under its own data key at its
                   first start (base64), so a workload replaced while unfinished is refused
rec        hash    record id -> sealed record (deleted once the record is done)
st         hash    record id -> sealed status record
done       bitmap  bit per record id: done (idempotent, so re-runs never double count)
failed     bitmap  bit per record id: failed for good
pending    zset    job id -> lease deadline (``+inf`` while queued); the in-flight window
spec       hash    job id -> sealed chunk spec, so a dead worker's chunk can be re-run
parts      hash    chunk key -> committed result part blob name
retry      zset    "record:attempt" -> due time (backoff)
n          hash    live counters: processing; per started job: its size and a sealed start note
perf       hash    processed records and seconds, for throughput and adaptive chunk sizes
lock       string the scheduler supervising W (host:pid), with a TTL it renews
=========  ======  ==========================================================================
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

__all__ = [
    "OUTBOX",
    "OUTBOX_TIMES",
    "PIN_FIELD",
    "REJECTED",
    "SUBMISSIONS",
    "WORKLOADS",
    "WorkloadKeys",
    "held_key",
    "job_id",
    "parse_job_id",
    "pin_value",
    "read_pin",
]

#: zset of workload ids by submission time
WORKLOADS = "rqp:workloads"
#: hash msg id -> envelope, for status/event messages committed but not yet published
OUTBOX = "rqp:outbox"
OUTBOX_TIMES = "rqp:outbox:t"
#: list of rejected (forged, replayed, altered) jobs with the reason, newest first
REJECTED = "rqp:rejected"
#: list of workload ids waiting for a scheduler
SUBMISSIONS = "rqp:submissions"


class WorkloadKeys:
    __slots__ = ("done", "failed", "lock", "meta", "n", "parts", "pending", "perf", "rec", "retry", "spec", "st", "w")

    def __init__(self, workload_id: str) -> None:
        p = f"rqp:w:{workload_id}:"
        self.w = workload_id
        self.meta = p + "meta"
        self.rec = p + "rec"
        self.st = p + "st"
        self.done = p + "done"
        self.failed = p + "failed"
        self.pending = p + "pending"
        self.spec = p + "spec"
        self.parts = p + "parts"
        self.retry = p + "retry"
        self.n = p + "n"
        self.perf = p + "perf"
        self.lock = p + "lock"

    def all(self) -> list[str]:
        return [getattr(self, s) for s in self.__slots__ if s != "w"]


def held_key(worker: str) -> str:
    """String: the job whose lease worker ``host:pid`` holds (set by START, cleared by COMMIT),
    so the worker's supervisor can end that lease at once when the worker dies."""
    return f"rqp:held:{worker}"


def job_id(workload_id: str, chunk: str, gen: int) -> str:
    """RQ job ids: ``rqp-<workload>-<chunk>-<gen>``; chunk is ``c########`` or ``r########``."""
    return f"rqp-{workload_id}-{chunk}-{gen}"


def parse_job_id(jid: str) -> tuple[str, str, int]:
    head, chunk, gen = jid.rsplit("-", 2)
    if not head.startswith("rqp-"):
        raise ValueError(jid)
    return head[4:], chunk, int(gen)


#: the meta field holding a workload's start pin (``Workload.seal_pin``, base64)
PIN_FIELD = "pin"


def pin_value(sealed: bytes) -> str:
    return base64.b64encode(sealed).decode()


def read_pin(r: Any, workload_id: str) -> bytes | None:
    """The sealed start pin of ``workload_id`` from Redis, or None (never started, or deleted)."""
    raw = r.hget(f"rqp:w:{workload_id}:meta", PIN_FIELD)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return b""
