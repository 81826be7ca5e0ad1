"""Operators' control of workloads: pause, resume, cancel, retry the failed records, priority,
delete -- each a request signed with the operator's key (``rqp.oplog``).

Every action is posted as a ``rqp.oplog.ControlRequest`` signed by ``signer`` (an operator key
from ``RQP_TRUSTED_OPERATORS_FILE``, or the submitter key that signed the workload) to the
workload's request list and to the hash-chained audit log, in one script; the scheduler acts only
on requests that verify. The shown state (``meta.state``, and the ``control`` field schedulers
from before signed control read) changes at once and is advisory. What each means:

* **pause**: nothing new is queued (neither chunks nor retries), chunks not yet started are taken
  off the RQ queue; chunks in hand finish and commit. Nothing is lost or re-run.
* **resume**: the chunks taken off go back on the queue, and the enqueue goes on.
* **cancel**: as pause, then the chunks not started are dropped; once the chunks in hand have
  committed, what was done is consolidated: results and a summary as for a finished workload,
  whose ``cancelled`` count says how many records never ran. State ``cancelled``.
* **retry failed** (``rqp retry W --failed``): a finished workload's failed records -- as its
  sealed summary lists them, not as a Redis bitmap says -- run again in a new round.
* **delete** (``rqp delete W [--shred]``): its Redis state and blobs go; with ``shred`` its
  wrapped data key is overwritten first, so no copy of its ciphertexts anywhere (a backup, an
  AOF, a stray blob) can be decrypted again.

A workload id that is neither in Redis nor packed in the blob store is refused before anything
is written (a typo never leaves an audit entry or a key behind).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

import redis

from .errors import BlobNotFoundError, IntegrityError, RqpError, WorkloadError
from .ledger import TOMBSTONES, Head, Ledger, Meta, Priority, State, WorkloadKeys, submit
from .oplog import AuditEntry, post, read_audit
from .signing import SigningKey, TrustStore

if TYPE_CHECKING:
    from .storage import BlobStore
    from .workload import Workload

#: a blob store, a zero-argument callable that opens one on first use, or None (Redis alone decides)
StoreArg: TypeAlias = "BlobStore | Callable[[], BlobStore] | None"

__all__ = [
    "audit",
    "cancel",
    "check_known",
    "delete",
    "pause",
    "resume",
    "retry_failed",
    "set_priority",
    "unknown",
]

#: what each advisory action needs the workload to be
_NEEDS = {"pause": "running", "resume": "paused", "cancel": "running or paused"}
_PAST = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}


def unknown(workload_id: str) -> WorkloadError:
    return WorkloadError(
        f"workload {workload_id} is not known to Redis nor packed in the blob store; check the id ('rqp list')"
    )


def _packed(store: StoreArg, workload_id: str) -> bool:
    from .workload import blob_name  # noqa: PLC0415 - keeps this module light for the console

    if callable(store):  # opened only now: a command on a workload Redis knows never opens it
        store = store()
    return store is not None and bool(store.exists(blob_name(workload_id, "manifest.json")))


def manifest_digest(store: StoreArg, workload_id: str) -> str:
    """The content digest of the workload version packed now (what a request binds itself to),
    or "" when it cannot be read here; reading the manifest needs no key."""
    from .workload import Manifest, blob_name  # noqa: PLC0415 - keeps this module light for the console

    if callable(store):
        store = store()
    if store is None:
        return ""
    try:
        return Manifest.from_json(store.get(blob_name(workload_id, "manifest.json")), workload_id).content_digest()
    except (RqpError, ValueError):
        return ""


def check_known(r: redis.Redis, store: StoreArg, workload_id: str) -> bool:
    """True when Redis knows the workload, False when only the blob store has it packed;
    ``WorkloadError`` (exit 7) when neither does -- before anything is written. ``store``: the
    blob store, a zero-argument callable that opens it, or None (Redis alone decides)."""
    if Ledger(r, workload_id).exists():
        return True
    if _packed(store, workload_id):
        return False
    raise unknown(workload_id)


def _advisory(r: redis.Redis, store: StoreArg, signer: SigningKey, workload_id: str, action: str, actor: str) -> str:
    in_redis = check_known(r, store, workload_id)
    if not in_redis:
        raise WorkloadError(
            f"workload {workload_id} is packed but not started; only a workload that is {_NEEDS[action]} can be {_PAST[action]}"
        )
    ok, state, _ = post(
        r, signer, workload_id, action, "", actor, advisory=action, submit=action != "pause",
        manifest=manifest_digest(store, workload_id),
    )  # fmt: skip
    if ok:
        return state
    if not state:
        raise unknown(workload_id)
    raise WorkloadError(
        f"workload {workload_id} is {state}; only a workload that is {_NEEDS[action]} can be {_PAST[action]}"
    )


def pause(r: redis.Redis, signer: SigningKey, workload_id: str, actor: str, store: StoreArg = None) -> str:
    return _advisory(r, store, signer, workload_id, "pause", actor)


def resume(r: redis.Redis, signer: SigningKey, workload_id: str, actor: str, store: StoreArg = None) -> str:
    return _advisory(r, store, signer, workload_id, "resume", actor)


def cancel(r: redis.Redis, signer: SigningKey, workload_id: str, actor: str, store: StoreArg = None) -> str:
    return _advisory(r, store, signer, workload_id, "cancel", actor)


def retry_failed(r: redis.Redis, store: BlobStore, workload: Workload, signer: SigningKey, actor: str) -> int:
    """Run a finished workload's failed records again, in a new round; how many failed, as the
    sealed summary lists them (a Redis writer who DELs the ``failed`` bitmap changes nothing).

    ``workload``: the opened ``rqp.workload.Workload`` (the KEK opens its summary and head)."""
    from .summary import read_summary  # noqa: PLC0415 - keeps this module light for the console

    led = Ledger(r, workload.id)
    if not led.exists():
        raise unknown(workload.id)
    state = led.state()
    if state not in (State.DONE, State.FAILED, State.CANCELLED):
        return 0
    try:
        summary = read_summary(store, workload)
    except BlobNotFoundError:
        return 0  # no summary: nothing finished, nothing failed
    # records refused when read (attempts 0: no id in the --id-field) are not run again: the
    # same data refuses them again (``rqp_scheduler.run.retries``)
    count, _refused = summary.retry_counts()
    if count <= 0:
        return 0
    round_ = Head.open(workload, led.head()).round + 1
    # the signed request first: a state shown as running is never without the request behind it
    post(r, signer, workload.id, "retry", str(round_), actor, manifest=workload.manifest.content_digest())
    keys = WorkloadKeys(workload.id)
    pipe = r.pipeline(transaction=True)
    pipe.hset(keys.meta, Meta.STATE, State.RUNNING.value)
    pipe.hdel(keys.meta, Meta.FINISHED_AT, Meta.CONTROL)  # a cancelled one's 'cancel': the retry runs
    for key in keys.all():
        pipe.persist(key)
    submit(pipe, workload.id)  # then a serving scheduler takes it (the old ``requeue_failed`` did the same)
    pipe.execute()
    return count


def set_priority(
    r: redis.Redis, signer: SigningKey, workload_id: str, priority: str, actor: str, store: StoreArg = None
) -> Priority:
    """A workload's priority, before it starts or while it runs (its chunks queued from then on).
    A workload only packed (not in Redis yet) needs ``store`` to be found."""
    try:
        level = Priority(priority)
    except ValueError:
        raise WorkloadError(f"priority {priority!r} is not one of {', '.join(p.value for p in Priority)}") from None
    in_redis = check_known(r, store, workload_id)
    led = Ledger(r, workload_id)
    state = led.state()
    if state is not None and State(state).finished:
        raise WorkloadError(f"workload {workload_id} is {state}; its priority no longer matters")
    post(
        r, signer, workload_id, "priority", level.value, actor, require_known=in_redis,
        manifest=manifest_digest(store, workload_id),
    )  # fmt: skip
    led.set_priority(level)
    return level


def tombstone(r: redis.Redis, store: BlobStore, workload_id: str, actor: str) -> None:
    """Remember the deleted workload's manifest digest, so its signed blobs uploaded again are
    refused (``rqp.backends.check_tombstone``); nothing to remember when it has no manifest."""
    from .workload import Manifest, blob_name  # noqa: PLC0415 - keeps this module light for the console

    try:
        raw = store.get(blob_name(workload_id, "manifest.json"))
        digest = Manifest.from_json(raw, workload_id).content_digest()
    except (BlobNotFoundError, IntegrityError):
        return
    r.hset(TOMBSTONES, digest, json.dumps({"workload": workload_id, "at": time.time(), "who": actor}))


def audit(
    r: redis.Redis, operators: TrustStore | None, submitters: TrustStore | None = None, limit: int = 100
) -> list[AuditEntry]:
    """Operators' actions, newest first, each marked verified or not (``rqp.oplog.read_audit``)."""
    return read_audit(r, operators, submitters, limit)


def delete(
    r: redis.Redis, store: BlobStore, signer: SigningKey, workload_id: str, actor: str, *, shred: bool = False
) -> tuple[int, int]:
    """Remove a workload that is not running: its Redis keys and its blobs; with ``shred``, its
    wrapped data key is overwritten with random bytes first. Returns (Redis keys, blobs) removed."""
    from .workload import blob_name  # noqa: PLC0415 - keeps this module light for the console

    led = Ledger(r, workload_id)
    state = led.state()
    blobs = list(store.list(blob_name(workload_id, "")))
    if state is None and not blobs:
        raise unknown(workload_id)
    if state is not None and not State(state).finished:
        raise WorkloadError(
            f"workload {workload_id} is {state}; cancel it first ('rqp cancel {workload_id}') and delete it once cancelled"
        )
    post(
        r, signer, workload_id, "delete", "shred" if shred else "", actor, require_known=state is not None,
        manifest=manifest_digest(store, workload_id),
    )  # fmt: skip
    tombstone(r, store, workload_id, actor)
    if shred:
        for name in blobs:
            if name.endswith(("key.json", "key.previous.json")):
                store.put(name, os.urandom(max(512, store.size(name))))
    removed = led.delete_all()
    for name in blobs:
        store.delete(name)
    return removed, len(blobs)
