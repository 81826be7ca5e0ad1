"""Draining a processor: its workers take no new chunk, finish the chunk in hand if they can, and
hand back at once what they cannot finish by the deadline.

One path for every way a processor is told to go: SIGTERM (``docker compose stop``, a scale-down,
systemd) with ``--grace`` seconds, and an eviction notice (``evictions``) with its ``NotBefore``
less ``RQP_DRAIN_MARGIN_SECONDS``. Each worker gets SIGTERM (RQ's warm shutdown: no new job, the
job in hand finishes); one still busy at the deadline is stopped and its chunk handed back
(``rqp.ledger.hand_back_drained``): the lease ends now, so another processor runs the chunk
within a second, and the re-run spends no attempt of its records and is counted as a requeue
after preemption, not as a lost worker. A chunk is never half-committed: its commit is one
atomic Redis script, and the stopped worker's results part is never uploaded.
"""

from __future__ import annotations

import logging
import math
import signal
import subprocess
import time
from dataclasses import dataclass, field

import redis
from rq.utils import utcparse

from rqp import sandbox
from rqp.identity import process_identity
from rqp.ledger import Counters, JobId, Perf, WorkloadKeys, hand_back_drained, held_key, text

__all__ = ["DrainReport", "drain_workers", "expected_finish", "hand_back"]

log = logging.getLogger("rqp.processor")


@dataclass
class DrainReport:
    """What a drain did: chunks handed back, whether a worker had to be stopped, how long it took."""

    handed_back: list[str] = field(default_factory=list)
    killed: bool = False
    seconds: float = 0.0


def _started(r: redis.Redis, jid: str) -> float | None:
    """When RQ says job ``jid`` started (epoch s); None when unknown or junk."""
    try:
        return utcparse(str(text(r.hget(f"rq:job:{jid}", "started_at")))).timestamp()
    except (redis.RedisError, ValueError, OverflowError):
        return None


def hand_back(r: redis.Redis, pid: int) -> str | None:
    """Hand back the chunk stopped worker ``pid`` of this host held, with the seconds it had run
    (what the drain cost); its job id, or None. Best effort: if Redis cannot be reached the lease
    runs out by itself (and spends a free re-run)."""
    try:
        jid = text(r.get(held_key(process_identity(pid))))
        started = _started(r, jid) if jid is not None else None
        spent = time.time() - started if started is not None else None
        return hand_back_drained(r, process_identity(pid), spent=spent)
    except redis.RedisError as exc:
        log.warning("could not hand back the chunk of worker pid %d (%s); its lease will run out", pid, exc)
        return None


def expected_finish(r: redis.Redis, pid: int) -> float | None:
    """When (epoch s) the chunk worker ``pid`` of this host holds should be done: when RQ says it
    started, plus its records at the workload's seconds per record so far (``perf``); None when
    it holds none or that cannot be told yet (no chunk of the workload committed). Plain values:
    a wrong guess only moves when the chunk is handed back, never what it spends."""
    try:
        jid = text(r.get(held_key(process_identity(pid))))
        if jid is None:
            return None
        keys = WorkloadKeys(JobId.parse(jid).workload)
        pipe = r.pipeline(transaction=False)
        pipe.hget(keys.n, Counters.size(jid))
        pipe.hmget(keys.perf, Perf.RECORDS, Perf.SECONDS)
        size, (records, seconds) = pipe.execute()
        per_record = float(seconds) / float(records)
        begun = _started(r, jid)
        if begun is None:
            return None
        finish = begun + int(size) * per_record
    except (redis.RedisError, ValueError, TypeError, ZeroDivisionError, OverflowError):
        return None
    return finish if math.isfinite(finish) else None  # NaN or infinity (junk in perf) tells nothing


def drain_workers(
    r: redis.Redis, procs: list[subprocess.Popen], deadline: float, why: str, *, early: bool = True
) -> DrainReport:
    """SIGTERM every live worker, wait for them until ``deadline`` (``time.monotonic()``), stop
    those still busy and hand their chunks back. A worker whose chunk is expected to end past the
    deadline (``expected_finish``; with ``early``) is stopped and its chunk handed back at once,
    so another processor starts it now. ``why`` completes "did not stop ..." in the log
    ("within 25s", "before the eviction (Preempt)")."""
    started = time.monotonic()
    report = DrainReport()
    cutoff = time.time() + (deadline - started)  # the deadline as epoch seconds
    hopeless: dict[int, float] = {}  # pid -> when its chunk would end, past the deadline
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            finish = expected_finish(r, p.pid) if early else None
            if finish is not None and finish > cutoff:
                hopeless[p.pid] = finish
    for p in sorted(procs, key=lambda p: p.pid not in hopeless):  # the hopeless first: at once
        try:
            p.wait(0 if p.pid in hopeless else max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            report.killed = True
            late = hopeless.get(p.pid)
            when = f"{why} (expected to end {late - cutoff:.1f}s past it)" if late is not None else why
            if jid := hand_back(r, p.pid):
                report.handed_back.append(jid)
                log.warning(
                    "worker pid %d could not finish %s %s; stopped, and the chunk handed back for another "
                    "processor (no attempt spent)",
                    p.pid,
                    jid,
                    when,
                )
            else:  # idle, or between chunks: nothing to re-run, and nothing claimed
                log.warning("worker pid %d did not stop %s; killed (it held no chunk)", p.pid, why)
        sandbox.remove_leftovers(pid=p.pid)  # its script hosts' scratch, however it ended
    report.seconds = time.monotonic() - started
    return report
