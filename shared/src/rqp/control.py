"""Operators' control of workloads: pause, resume, cancel, retry the failed records, delete.

Pause, resume and cancel are requests: one script (``rqp.ledger`` ``control.lua``) checks the
workload's state, sets the new one and records who asked and when in the audit log
(``rqp:audit``); the scheduler supervising the workload carries the request out on its next step
(a workload no scheduler supervises is handed to a serving one). What each means:

* **pause**: nothing new is queued (neither chunks nor retries), chunks not yet started are taken
  off the RQ queue; chunks in hand finish and commit. Nothing is lost or re-run.
* **resume**: the chunks taken off go back on the queue, and the enqueue goes on.
* **cancel**: as pause, then the chunks not started are dropped; once the chunks in hand have
  committed, what was done is consolidated: results and a summary as for a finished workload,
  whose ``cancelled`` count says how many records never ran. State ``cancelled``.
* **retry failed** (``rqp retry W --failed``): a finished workload's failed records run again.
* **delete** (``rqp delete W [--shred]``): its Redis state and blobs go; with ``shred`` its
  wrapped data key is overwritten first, so no copy of its ciphertexts anywhere (a backup, an
  AOF, a stray blob) can be decrypted again.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

from .errors import BlobNotFoundError, IntegrityError, WorkloadError
from .ledger import AUDIT, TOMBSTONES, Control, Ledger, Priority, State

__all__ = ["audit", "cancel", "delete", "pause", "resume", "retry_failed", "set_priority"]

#: what each action needs the workload to be
_NEEDS = {
    Control.PAUSE: "running",
    Control.RESUME: "paused",
    Control.CANCEL: "running or paused",
}


def _request(r: redis.Redis, workload_id: str, action: Control, actor: str) -> str:
    ok, state = Ledger(r, workload_id).request(action, actor, time.time())
    if ok:
        return state
    if not state:
        raise WorkloadError(f"workload {workload_id} is not known to Redis; check the id ('rqp list')")
    raise WorkloadError(
        f"workload {workload_id} is {state}; only a workload that is {_NEEDS[action]} can be {_PAST[action]}"
    )


_PAST = {Control.PAUSE: "paused", Control.RESUME: "resumed", Control.CANCEL: "cancelled"}


def pause(r: redis.Redis, workload_id: str, actor: str) -> str:
    return _request(r, workload_id, Control.PAUSE, actor)


def resume(r: redis.Redis, workload_id: str, actor: str) -> str:
    return _request(r, workload_id, Control.RESUME, actor)


def cancel(r: redis.Redis, workload_id: str, actor: str) -> str:
    return _request(r, workload_id, Control.CANCEL, actor)


def retry_failed(r: redis.Redis, workload_id: str, actor: str) -> int:
    """Run a finished workload's failed records again (a new round); how many failed."""
    led = Ledger(r, workload_id)
    if not led.exists():
        raise WorkloadError(f"workload {workload_id} is not known to Redis; check the id ('rqp list')")
    count = led.requeue_failed()
    if count:
        _audit(r, actor, "retry", workload_id)
    return count


def set_priority(r: redis.Redis, workload_id: str, priority: str, actor: str) -> Priority:
    """A workload's priority, before it starts or while it runs (its chunks queued from then on)."""
    try:
        level = Priority(priority)
    except ValueError:
        raise WorkloadError(f"priority {priority!r} is not one of {', '.join(p.value for p in Priority)}") from None
    led = Ledger(r, workload_id)
    state = led.state()
    if state is not None and State(state).finished:
        raise WorkloadError(f"workload {workload_id} is {state}; its priority no longer matters")
    led.set_priority(level)
    _audit(r, actor, f"priority {level.value}", workload_id)
    return level


def tombstone(r: redis.Redis, store: Any, workload_id: str, actor: str) -> None:
    """Remember the deleted workload's manifest digest, so its signed blobs uploaded again are
    refused (``rqp.backends.check_tombstone``); nothing to remember when it has no manifest."""
    from .workload import Manifest, blob_name  # noqa: PLC0415 - keeps this module light for the console

    try:
        raw = store.get(blob_name(workload_id, "manifest.json"))
        digest = Manifest.from_json(raw, workload_id).content_digest()
    except (BlobNotFoundError, IntegrityError):
        return
    r.hset(TOMBSTONES, digest, json.dumps({"workload": workload_id, "at": time.time(), "who": actor}))


def _audit(r: Any, actor: str, what: str, workload_id: str) -> None:
    entry = json.dumps({"at": time.time(), "who": actor, "what": what, "workload": workload_id})
    r.lpush(AUDIT, entry)


def audit(r: redis.Redis, limit: int = 100) -> list[dict[str, Any]]:
    """Operators' actions, newest first."""
    return [json.loads(x) for x in r.lrange(AUDIT, 0, limit - 1)]


def delete(r: redis.Redis, store: Any, workload_id: str, actor: str, *, shred: bool = False) -> tuple[int, int]:
    """Remove a workload that is not running: its Redis keys and its blobs; with ``shred``, its
    wrapped data key is overwritten with random bytes first. Returns (Redis keys, blobs) removed."""
    from .workload import blob_name  # noqa: PLC0415 - keeps this module light for the console

    led = Ledger(r, workload_id)
    state = led.state()
    if state is not None and not State(state).finished:
        raise WorkloadError(
            f"workload {workload_id} is {state}; cancel it first ('rqp cancel {workload_id}') and delete it once cancelled"
        )
    blobs = list(store.list(blob_name(workload_id, "")))
    tombstone(r, store, workload_id, actor)
    if shred:
        for name in blobs:
            if name.endswith(("key.json", "key.previous.json")):
                store.put(name, os.urandom(max(512, store.size(name))))
    removed = led.delete_all()
    for name in blobs:
        store.delete(name)
    _audit(r, actor, "delete --shred" if shred else "delete", workload_id)
    return removed, len(blobs)
