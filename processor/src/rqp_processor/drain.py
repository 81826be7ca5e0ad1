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
import signal
import subprocess
import time
from dataclasses import dataclass, field

import redis

from rqp import sandbox
from rqp.identity import process_identity
from rqp.ledger import hand_back_drained

__all__ = ["DrainReport", "drain_workers", "hand_back"]

log = logging.getLogger("rqp.processor")


@dataclass
class DrainReport:
    """What a drain did: chunks handed back, whether a worker had to be stopped, how long it took."""

    handed_back: list[str] = field(default_factory=list)
    killed: bool = False
    seconds: float = 0.0


def hand_back(r: redis.Redis, pid: int) -> str | None:
    """Hand back the chunk stopped worker ``pid`` of this host held; its job id, or None. Best
    effort: if Redis cannot be reached the lease runs out by itself (and spends a free re-run)."""
    try:
        return hand_back_drained(r, process_identity(pid))
    except redis.RedisError as exc:
        log.warning("could not hand back the chunk of worker pid %d (%s); its lease will run out", pid, exc)
        return None


def drain_workers(r: redis.Redis, procs: list[subprocess.Popen], deadline: float, why: str) -> DrainReport:
    """SIGTERM every live worker, wait for them until ``deadline`` (``time.monotonic()``), stop
    those still busy and hand their chunks back. ``why`` completes "did not stop ..." in the log
    ("within 25s", "before the eviction at 12:00:00 UTC")."""
    started = time.monotonic()
    report = DrainReport()
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            report.killed = True
            if jid := hand_back(r, p.pid):
                report.handed_back.append(jid)
                log.warning(
                    "worker pid %d could not finish %s %s; stopped, and the chunk handed back for another "
                    "processor (no attempt spent)",
                    p.pid,
                    jid,
                    why,
                )
            else:  # idle, or between chunks: nothing to re-run, and nothing claimed
                log.warning("worker pid %d did not stop %s; killed (it held no chunk)", p.pid, why)
        sandbox.remove_leftovers(pid=p.pid)  # its script hosts' scratch, however it ended
    report.seconds = time.monotonic() - started
    return report
