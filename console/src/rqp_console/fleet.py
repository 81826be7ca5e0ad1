"""The fleet: processors and RQ workers per host, what each worker is doing, rejected jobs.

RQ's own monitoring (``rq.Worker.all``) hydrates workers and, on the way, *deletes* stale
entries (SREM on its registries) -- a write, which the console's read-only Redis user may not
do -- and hydrating a busy worker's current job deserializes it, which fails without rqp's JSON
serializer (rq-dashboard, which the console replaced, answered 500 for every busy worker that
way). The console reads the same registry keys, by RQ's own names, and never deserializes a job
at all: a job id is all it needs, since rqp's job ids name their workload and chunk
(``rqp.ledger.JobId``). Three round trips in all, whatever the fleet's size.

Processors and their sandbox protections come from rqp's fleet registry (``rqp.ledger.fleet``),
which each ``rqp-processor`` supervisor renews. Nothing there is signed: anyone with the Redis
password can register a processor "with landlock, seccomp, rlimits" that does not exist. So
every processor, its host and its protections are shown as **self-reported** (``EVIDENCE``),
never as verified.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import redis
from rq.defaults import DEFAULT_WORKER_TTL
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.queue import Queue
from rq.worker import Worker

from rqp.jobs import JOB_TIMEOUT
from rqp.ledger import JobId, fleet, rejections

__all__ = [
    "EVIDENCE",
    "EVIDENCE_NOTE",
    "STALE_BUSY_SECONDS",
    "STALE_IDLE_SECONDS",
    "fleet_view",
    "job_workers",
    "read_workers",
    "stale_after",
]

#: what backs a fleet entry: nothing an attacker without keys cannot forge
EVIDENCE = "self-reported"
#: the page's one-line caveat
EVIDENCE_NOTE = (
    "Processors, their hosts and sandbox protections are self-reported: each processor writes its own "
    "entry to Redis unsigned, so anyone holding the Redis password could write one; nothing here is verified."
)

#: How old a live worker's heartbeat can be, read from RQ's own loop (``rq/worker/base.py``).
#: An idle worker heartbeats, then blocks on the queues for ``worker_ttl - 15`` seconds
#: (``dequeue_timeout``: 405 s at RQ's default ``worker_ttl`` of 420, which rqp-processor keeps),
#: and heartbeats again; RQ itself lets its key expire ``worker_ttl + 60`` s after a heartbeat.
#: So an idle worker is stale only once it is past RQ's ``worker_ttl`` without a heartbeat -- a
#: fixed 60 s marked every healthy idle worker stale a minute after a workload ended.
STALE_IDLE_SECONDS = float(DEFAULT_WORKER_TTL)
#: A busy rqp worker (RQ's ``SimpleWorker``) heartbeats when it takes a job and when it finishes
#: it, promising the next one within the job's timeout plus RQ's 60 s; a chunk takes well under a
#: second, but a heartbeat is only late past that promise.
STALE_BUSY_SECONDS = float(JOB_TIMEOUT + 60)


def stale_after(state: str) -> float:
    """Seconds after its last heartbeat that a worker in ``state`` has missed the next one."""
    return STALE_BUSY_SECONDS if state == "busy" else STALE_IDLE_SECONDS


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _job(jid: str | None) -> dict[str, Any] | None:
    if not jid:
        return None
    try:
        j = JobId.parse(jid)
    except ValueError:
        return {"id": jid, "workload": None, "chunk": None}
    return {"id": jid, "workload": j.workload, "chunk": j.chunk, "generation": j.gen}


def read_workers(r: redis.Redis, now: float | None = None) -> list[dict[str, Any]]:
    """Every registered RQ worker: name, host, pid, state, its current job, heartbeat, counts."""
    now = time.time() if now is None else now
    names = sorted(_text(k) for k in r.smembers(Worker.redis_workers_keys))
    if not names:
        return []
    prefix = Worker.redis_worker_namespace_prefix
    pipe = r.pipeline(transaction=False)
    for key in names:
        pipe.hgetall(key)
        pipe.smembers(WORKER_EXECUTIONS_KEY_TEMPLATE.format(key[len(prefix) :]))
    replies = pipe.execute()
    out = []
    for i, key in enumerate(names):
        data = {_text(k): _text(v) for k, v in replies[2 * i].items()}
        if not data:
            continue  # registered but gone (RQ's own cleanup removes it later)
        executions = sorted(_text(m).split(":", 1)[0] for m in replies[2 * i + 1])
        state = data.get("state", "?")
        heartbeat = _epoch(data.get("last_heartbeat"))
        current = executions[0] if executions and state == "busy" else None
        out.append(
            {
                "name": key[len(prefix) :],
                "host": data.get("hostname") or "?",
                "pid": int(data["pid"]) if data.get("pid", "").isdigit() else None,
                "state": state,
                "job": _job(current),
                "heartbeat": heartbeat,
                "stale": heartbeat is None or now - heartbeat > stale_after(state),
                "stale_after": stale_after(state),
                "born": _epoch(data.get("birth")),
                "succeeded": int(data.get("successful_job_count") or 0),
                "failed": int(data.get("failed_job_count") or 0),
                "queues": [q for q in data.get("queues", "").split(",") if q],
            }
        )
    return out


def job_workers(workers: list[dict[str, Any]]) -> dict[str, str]:
    """Job id -> the name of the worker running it, from the workers' registry (no key needed)."""
    return {w["job"]["id"]: w["name"] for w in workers if w.get("job")}


def fleet_view(r: redis.Redis, rq_queue: str, now: float | None = None, rejected: int = 50) -> dict[str, Any]:
    """Hosts (each with its processors and workers), the RQ queue's length, rejected jobs."""
    now = time.time() if now is None else now
    workers = read_workers(r, now)
    processors = fleet(r, now=now)
    pipe = r.pipeline(transaction=False)
    pipe.llen(Queue.redis_queue_namespace_prefix + rq_queue)
    (queued,) = pipe.execute()
    hosts: dict[str, dict[str, Any]] = defaultdict(lambda: {"processors": [], "workers": []})
    for p in processors:
        hosts[p["host"]]["processors"].append({**p, "age": round(now - p["seen_at"], 1), "evidence": EVIDENCE})
    for w in workers:
        hosts[w["host"]]["workers"].append(w)
    ordered = []
    for name in sorted(hosts):
        h = hosts[name]
        live = [w for w in h["workers"] if not w["stale"]]
        ordered.append(
            {
                "host": name,
                "processors": h["processors"],
                "workers": sorted(h["workers"], key=lambda w: (w["pid"] or 0, w["name"])),
                "busy": sum(1 for w in live if w["state"] == "busy"),
                "idle": sum(1 for w in live if w["state"] != "busy"),
            }
        )
    return {
        "hosts": ordered,
        "workers": len(workers),
        "busy": sum(1 for w in workers if w["state"] == "busy" and not w["stale"]),
        "processors": len(processors),
        "rq_queue": rq_queue,
        "rq_queued": int(queued),
        "rejected": rejections(r, rejected),
        "evidence_note": EVIDENCE_NOTE,
        "now": now,
    }
