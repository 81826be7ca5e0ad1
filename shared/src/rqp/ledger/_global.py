"""What every workload shares in Redis: the list of workloads, submissions to a serving
scheduler, the log of rejected jobs, and which job each worker holds."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from ._codecs import JobId, Meta, text
from ._keys import REJECTED, SUBMISSIONS, SUBMITTED_CHANNEL, WORKLOADS, WorkloadKeys, held_key

__all__ = [
    "REJECTED_KEEP",
    "announce_submission",
    "next_submission",
    "record_rejection",
    "rejections",
    "release_worker",
    "submit",
    "workloads",
]

#: rejected jobs kept in the log, newest first
REJECTED_KEEP = 1000

_log = logging.getLogger("rqp.ledger")


def submit(r: Any, workload_id: str) -> None:
    """Hand a workload to a serving scheduler (``r`` may be a pipeline)."""
    r.rpush(SUBMISSIONS, workload_id)


def announce_submission(r: redis.Redis) -> bool:
    """Tell a serving scheduler that something was submitted (PUBLISH on ``SUBMITTED_CHANNEL``),
    after ``submit``: it takes the submission at once rather than at its next look (every 0.1 s).
    A hint, never the hand-over -- the list entry is, and the scheduler still looks at it on its
    own -- so a Redis user whose ACL predates the channel (no PUBLISH), or a Redis that went away
    after the push, costs only that wait: False, nothing raised."""
    try:
        r.publish(SUBMITTED_CHANNEL, b"")
    except redis.RedisError:
        return False
    return True


def next_submission(r: redis.Redis) -> str | None:
    value = r.lpop(SUBMISSIONS)
    return text(value) if isinstance(value, (bytes, str)) else None


def workloads(r: redis.Redis, *, newest_first: bool = False, limit: int = -1) -> list[str]:
    """Workload ids by when they were started."""
    end = -1 if limit < 0 else limit - 1
    ids = r.zrevrange(WORKLOADS, 0, end) if newest_first else r.zrange(WORKLOADS, 0, end)
    return [str(text(w)) for w in ids]


def unfinished(r: redis.Redis, ids: list[str] | None = None) -> list[str]:
    """Workloads started and not finished (a serving scheduler resumes them), of ``ids`` (default:
    every one listed). A member of ``rqp:workloads`` whose meta is not rqp's (a Redis writer's
    junk: WRONGTYPE) is skipped with one line, so it cannot stop the service that serves every
    other workload."""
    if ids is None:
        ids = workloads(r)
    pipe = r.pipeline(transaction=False)
    for wid in ids:
        pipe.hget(WorkloadKeys(wid).meta, Meta.STATE)
    found = []
    for wid, state in zip(ids, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(state, Exception):
            _log.warning(
                "workload %.80r: its meta (rqp:w:<id>:meta) is not rqp's (%s); skipped -- delete it if nobody should "
                "have written it", wid, str(state).split(":")[0][:60],
            )  # fmt: skip
        elif state and state.decode(errors="replace") not in ("done", "failed", "cancelled"):
            found.append(wid)
    return found


def record_rejection(r: redis.Redis, *, job: str, workload: str | None, worker: str, reason: str) -> None:
    entry = json.dumps({"job": job, "workload": workload, "worker": worker, "at": time.time(), "reason": reason})
    pipe = r.pipeline(transaction=False)
    pipe.lpush(REJECTED, entry)
    pipe.ltrim(REJECTED, 0, REJECTED_KEEP - 1)
    pipe.execute()


def rejections(r: redis.Redis, limit: int = REJECTED_KEEP) -> list[dict[str, Any]]:
    """The rejection log, newest first; an entry rqp did not write shows as unreadable, never as an
    exception in whoever reads the log (the console's fleet page, ``rqp rejected``)."""
    out: list[dict[str, Any]] = []
    for x in r.lrange(REJECTED, 0, limit - 1):
        try:
            entry = json.loads(x)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            entry = {"job": "?", "workload": None, "worker": "?", "at": 0.0, "reason": "unreadable entry (not rqp's)"}
        out.append(entry)
    return out


def release_worker(r: redis.Redis, worker: str) -> str | None:
    """End the lease of the chunk a dead worker (``host:pid``) held, so the scheduler re-runs it
    now; returns its job id. A commit or reclaim that already won stays won."""
    key = held_key(worker)
    jid = text(r.get(key))
    if jid is None:
        return None
    try:
        workload_id = JobId.parse(jid).workload
    except ValueError:
        r.delete(key)
        return None
    r.zadd(WorkloadKeys(workload_id).pending, {jid: time.time()}, xx=True, lt=True)
    r.delete(key)
    return jid
