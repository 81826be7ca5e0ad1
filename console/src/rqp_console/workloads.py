"""Workloads at a glance: state, progress, counts, rate and ETA, from O(1) reads per workload.

Everything here comes from ``rqp.ledger.Ledger.snapshot`` -- the meta hash, the done / failed /
processing counters kept beside the bitmaps, the retry zset's cardinality and the perf hash --
so a refresh costs the same five commands for ten records or ten million. Nothing here reads a
bitmap, a per-record hash or a chunk's records, and nothing needs a key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from rqp.errors import RqpError
from rqp.ledger import PRIORITIES, Ledger, Meta, Priority, State, workloads
from rqp.status import ENDED, progress_of
from rqp.summary import Summary

from .throughput import ThroughputHistory

__all__ = ["DEFAULT_PRIORITY", "LIVE_STATES", "list_workloads", "priorities", "progress_row", "shown_priority"]

#: states in which the numbers can still change
LIVE_STATES = frozenset({State.RUNNING, State.PAUSED, State.CANCELLING, State.CONSOLIDATING})
#: the priority of a workload nobody gave one (what the scheduler queues it at)
DEFAULT_PRIORITY = Priority.NORMAL.value


def shown_priority(value: bytes | str | None) -> str:
    """A workload's priority as ``rqp:priorities`` holds it (where ``rqp priority`` and
    ``pack --priority`` write it, and the scheduler reads it), or the default."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    try:
        return Priority(text).value if text else DEFAULT_PRIORITY
    except ValueError:
        return DEFAULT_PRIORITY  # not one rqp wrote: the scheduler queues it at the default too


def priorities(r: redis.Redis, ids: list[str]) -> dict[str, str]:
    """Each workload's priority, in one HMGET however many are listed."""
    if not ids:
        return {}
    return {wid: shown_priority(v) for wid, v in zip(ids, r.hmget(PRIORITIES, ids), strict=True)}


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def progress_row(
    r: redis.Redis,
    workload_id: str,
    history: ThroughputHistory,
    now: float | None = None,
    spark: int = 0,
    summaries: Callable[[str], Summary | None] | None = None,
    priority: str | None = None,
    unconfirmed: Callable[[str, Summary], str] | None = None,
) -> dict[str, Any] | None:
    """One workload's progress as the pages show it; None when Redis does not know it.
    ``priority``: the workload's, when the caller read it already (else one HGET here).
    ``spark``: how many recent records/s points to include (0: none). ``summaries``: an ended
    workload's sealed summary (a console with the KEK); its counts replace Redis's plain ones, and
    without it an ended workload's counts are marked unverified. ``unconfirmed``: why the sealed
    head does not confirm that summary's round (``Opener.unconfirmed``: the rule ``rqp status``
    uses), ``""`` when it does; with a reason the sealed counts are shown but marked unverified,
    with the reason in ``round_note``, as ``rqp status`` marks them."""
    now = time.time() if now is None else now
    snap = Ledger(r, workload_id).snapshot()
    meta: dict[str, str] = snap["meta"]
    if not meta:
        return None
    state = meta.get(Meta.STATE, "unknown")
    total = _int(meta.get(Meta.TOTAL))
    enqueued = _int(meta.get(Meta.ENQUEUED)) or 0
    done, failed = snap["done"], snap["failed"]
    processing, retrying = snap["processing"], snap["retrying"]
    finished = done + failed
    started_at = _float(meta.get(Meta.STARTED_AT))
    finished_at = _float(meta.get(Meta.FINISHED_AT))
    live = state in LIVE_STATES
    history.add(workload_id, now, finished, started_at, live, ended=finished_at)
    elapsed = ((finished_at or now) - started_at) if started_at else 0.0
    # the run's throughput, ETA and reading progress as rqp status, the scheduler's log and the
    # summary show them (``rqp.throughput``); the recent rate only draws the sparkline
    progress = progress_of(workload_id, snap)
    rate = progress.rate if progress is not None else 0.0
    fraction_read = progress.read_fraction if progress is not None else None
    known = total if total is not None else enqueued
    eta = None
    if live and progress is not None and state != State.PAUSED:  # paused: no ETA until it resumes
        eta = progress.eta
    elif state in (State.DONE, State.FAILED, State.CANCELLED):
        eta = 0.0
    row: dict[str, Any] = {
        "id": workload_id,
        "state": state,
        "total": total,
        "enqueued": enqueued,
        "known": known,
        "done": done,
        "failed": failed,
        "processing": processing,
        "retrying": retrying,
        "queued": max(0, enqueued - finished - processing),
        "fraction": min(1.0, finished / known) if known else (1.0 if state == State.DONE else 0.0),
        "rate": round(rate, 1),
        "average_rate": round(rate, 1),
        "eta": None if eta is None else round(eta, 1),
        "read_fraction": fraction_read,
        "read_bytes": progress.read_bytes if progress is not None else None,
        "data_bytes": progress.data_bytes if progress is not None else None,
        "elapsed": round(elapsed, 1),
        "started_at": started_at,
        "finished_at": finished_at,
        "priority": priority if priority is not None else shown_priority(r.hget(PRIORITIES, workload_id)),
        "error": meta.get(Meta.ERROR),
        "processor_error": meta.get(Meta.PROCESSOR_ERROR),
        "control": meta.get(Meta.CONTROL),
        "reclaimed": _int(meta.get(Meta.RECLAIMED)) or 0,
        "preempted": progress.preempted if progress is not None else 0,
        "live": live,
    }
    row["verified"] = None
    if state in ENDED:
        summary = summaries(workload_id) if summaries is not None else None
        row["verified"] = summary is not None
        if summary is not None and unconfirmed is not None:
            why = _unconfirmed(unconfirmed, workload_id, summary)
            row["verified"] = not why
            row["round_note"] = why
        if summary is not None:
            row.update(
                state=summary.final_state, total=summary.total, known=summary.total, enqueued=summary.total,
                done=summary.done, failed=summary.failed, processing=0, retrying=0, queued=0,
                never_ran=summary.cancelled, rate=summary.records_per_second,
                preempted=summary.requeued_after_preemption,
                vms=[
                    {
                        "host": h,
                        "seconds": summary.processor_seconds_by_vm.get(h, 0.0),
                        "priority": summary.vm_priority.get(h, ""),
                        "drained_seconds": summary.drained_seconds_by_vm.get(h, 0.0),
                    }
                    for h in sorted({*summary.processor_seconds_by_vm, *summary.drained_seconds_by_vm})
                ],
                average_rate=summary.records_per_second,
                fraction=min(1.0, (summary.done + summary.failed) / summary.total) if summary.total else 1.0,
            )  # fmt: skip
    if spark:
        row["spark"] = [[round(t, 3), round(v, 1)] for t, v in history.rates(workload_id, limit=spark)]
    return row


def _unconfirmed(unconfirmed: Callable[[str, Summary], str], workload_id: str, summary: Summary) -> str:
    try:
        return unconfirmed(workload_id, summary)
    except (RqpError, ValueError) as exc:  # the workload no longer opens here: nothing confirms it
        return f"round not checked: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"


def list_workloads(
    r: redis.Redis,
    history: ThroughputHistory,
    limit: int = 50,
    now: float | None = None,
    summaries: Callable[[str], Summary | None] | None = None,
    unconfirmed: Callable[[str, Summary], str] | None = None,
) -> list[dict[str, Any]]:
    """The newest ``limit`` workloads (by when they were started), newest first (``summaries``,
    ``unconfirmed``: as ``progress_row`` takes them)."""
    rows = []
    ids = workloads(r, newest_first=True, limit=limit)
    levels = priorities(r, ids)
    for wid in ids:
        row = progress_row(
            r, wid, history, now=now, spark=60, summaries=summaries, priority=levels[wid], unconfirmed=unconfirmed
        )
        if row is not None:
            rows.append(row)
    return rows
