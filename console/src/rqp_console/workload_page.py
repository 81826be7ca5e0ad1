"""One workload's page: progress and throughput, its timeline, the chunks in flight with their
worker and lease, retries due, and the queues downstream systems read.

Cost per refresh is bounded by constants, not by the workload's size: the snapshot (five O(1)
commands), one pipeline over the in-flight window (at most ``IN_FLIGHT_SHOWN`` jobs) and the
retry zset's head, one HMGET for those jobs' sizes (and start notes), and one length of the
status queue. The in-flight window is bounded by the scheduler anyway (a few chunks per worker);
the retry zset is read by rank, never whole.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from typing import Any

import redis

from rqp.config import Settings
from rqp.errors import RqpError
from rqp.ledger import OUTBOX, Counters, JobId, Ledger, RetryEntry, State, WorkloadKeys
from rqp.oplog import read_audit
from rqp.results_root import Attestation
from rqp.round_marker import round_checked
from rqp.signing import TrustStore
from rqp.storage import BlobStore, MessageQueue
from rqp.verification import results_trust
from rqp.workload import Manifest, NotAManifestError, blob_name

from .results_check import MATCH
from .sealed import Opener
from .throughput import ThroughputHistory
from .workloads import progress_row

__all__ = ["IN_FLIGHT_SHOWN", "ManifestTimes", "allowed_actions", "workload_detail"]

#: chunks in flight listed (the window is a few chunks per live worker)
IN_FLIGHT_SHOWN = 100
#: retry entries looked at to count attempts (the head of the zset, by due time)
RETRY_SAMPLE = 200
#: audit entries looked through for this workload's actions
AUDIT_SCAN = 200
#: how long a workload's packing time is kept before its manifest is read again (a page's refresh)
PACKED_AT_SECONDS = 1.0


def allowed_actions(row: dict[str, Any]) -> list[str]:
    """What an operator may ask of the workload in its current state (``rqp.control`` checks
    again: this only decides which buttons show)."""
    state = row["state"]
    out = []
    if state == State.RUNNING:
        out += ["pause", "cancel"]
    elif state == State.PAUSED:
        out += ["resume", "cancel"]
    if state in (State.DONE, State.FAILED, State.CANCELLED) and row["failed"] > 0:  # a cancelled one's too
        out.append("retry")
    return out


class ManifestTimes:
    """When each workload was packed: its manifest's ``created``, kept ``PACKED_AT_SECONDS`` (a
    manifest changes with ``rqp pack --replace``: a new generation's page shows when IT was packed;
    it is shown, not trusted, so its signature is not checked here). Read with rqp's strict
    manifest reader: a junk ``manifest.json`` (``null``, a 5000-deep ``[[...]]``, ``created`` of
    ``1e999``) is no time at all, with the one line saying why in ``unreadable``."""

    def __init__(self, store: BlobStore | None) -> None:
        self.store = store
        #: workload -> (when read, the manifest's SHA-256, packed at, why it is not a manifest)
        self._known: dict[str, tuple[float, bytes, float | None, str | None]] = {}
        self._lock = threading.Lock()

    def _read(self, workload_id: str) -> tuple[float | None, str | None]:
        now = time.monotonic()
        with self._lock:
            hit = self._known.get(workload_id)
        if hit is not None and now - hit[0] < PACKED_AT_SECONDS:
            return hit[2], hit[3]
        seen, created, why = b"", None, None
        if self.store is not None:
            try:
                raw = self.store.get(blob_name(workload_id, "manifest.json"))
                seen = hashlib.sha256(raw).digest()
                if hit is not None and hit[1] == seen:  # unchanged: not parsed again
                    created, why = hit[2], hit[3]
                else:
                    created = Manifest.from_json(raw, workload_id).created
            except NotAManifestError as exc:
                why = str(exc)
            except (RqpError, OSError):
                created = None
        with self._lock:
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[workload_id] = (now, seen, created, why)
        return created, why

    def packed_at(self, workload_id: str) -> float | None:
        """The manifest's ``created`` (a finite unix time), None when there is none to read."""
        return self._read(workload_id)[0]

    def unreadable(self, workload_id: str) -> str | None:
        """Why the workload's ``manifest.json`` is not a manifest (one line), None when it is one."""
        return self._read(workload_id)[1]


def _lease(score: float, now: float) -> dict[str, Any]:
    if math.isinf(score):
        return {"started": False, "deadline": None, "seconds_left": None}
    return {"started": True, "deadline": score, "seconds_left": round(score - now, 1)}


def _failed_as_a_whole(r: redis.Redis, workload_id: str, row: dict[str, Any], opener: Opener | None) -> None:
    """A workload that failed as a whole (its script's import, its data, its parse()): the page
    says so with the reason -- decrypted when the console holds the KEK -- and no ETA, instead
    of "still reading the data ... ETA 0 s"."""
    row["eta"] = None
    row["failed_whole"] = True
    sealed = Ledger(r, workload_id).sealed_error()
    if opener is None or not sealed:
        return
    try:
        row["error"] = opener.error(workload_id, sealed)
        row["error_decrypted"] = True
    except (RqpError, ValueError) as exc:
        row["error_note"] = f"its sealed reason does not open here: {exc}"


def _results_root(workload_id: str, opener: Opener, settings: Settings) -> dict[str, Any] | None:
    """The workload's signed results root for the page's badge (``rqp.results_root``): the root,
    its signer, whether a trusted results key signed it for this workload and its manifest
    (``signed``), what the check of the stored results against it found (``records``:
    ``rqp_console.results_check``), whether the sealed head confirms its round is the current one
    (``round_checked``, ``round_note``), and ``verified`` only when all hold."""
    summary = opener.summary(workload_id)
    stale = opener.stale.get(workload_id)
    if summary is None and stale is not None:  # an older round's summary put back: refused, said why
        return {"root": None, "size": None, "signer": None, "verified": False, "note": stale}
    if summary is None or summary.root is None:
        return None
    try:
        att = Attestation.from_dict(summary.root, workload_id)
    except RqpError as exc:
        return {"root": None, "signer": None, "signed": False, "verified": False, "records": None, "note": str(exc)}
    out: dict[str, Any] = {
        "root": att.root.hex(),
        "size": att.size,
        "signer": att.signature.signer if att.signature is not None else None,
        "signed": False,
        "verified": False,
        "records": None,
        "note": "",
    }
    try:
        workload = opener.workload(workload_id)
        trust = results_trust(settings)
        att.check(workload, trust, workload_id)
    except RqpError as exc:
        out["note"] = str(exc)
        return out
    out["signed"] = True
    records = opener.results_checks.state(workload, trust, out["root"], att.size)
    out["records"] = records
    # only the sealed head proves this round is the current one (an older round's blobs put back
    # with that round's own marker read the same): without it, "round not checked", never verified
    note = opener.round_note(workload, att.round)
    out["round"] = att.round
    out["round_checked"] = round_checked(note)
    out["round_note"] = note.strip()[1:-1] if note else ""
    out["verified"] = records["status"] == MATCH and out["round_checked"]
    return out


def workload_detail(
    r: redis.Redis,
    workload_id: str,
    *,
    history: ThroughputHistory,
    workers_by_job: dict[str, str],
    settings: Settings,
    mq: MessageQueue | None,
    manifests: ManifestTimes,
    opener: Opener | None = None,
    now: float | None = None,
    operators: TrustStore | None = None,
    submitters: TrustStore | None = None,
) -> dict[str, Any] | None:
    """Everything the workload page shows; None when Redis does not know the workload."""
    now = time.time() if now is None else now
    row = progress_row(
        r,
        workload_id,
        history,
        now=now,
        summaries=opener.summary if opener is not None else None,
        unconfirmed=opener.unconfirmed if opener is not None else None,
    )
    if row is None:
        return None
    k = WorkloadKeys(workload_id)
    pipe = r.pipeline(transaction=False)
    pipe.zcard(k.pending)
    pipe.zcount(k.pending, "-inf", "(inf")
    pipe.zrange(k.pending, 0, IN_FLIGHT_SHOWN - 1, withscores=True)
    pipe.zcount(k.retry, "-inf", now)
    pipe.zrange(k.retry, 0, RETRY_SAMPLE - 1, withscores=True)
    pipe.hlen(OUTBOX)
    pending_n, started_n, pending, due_now, retry_head, outbox = pipe.execute()

    jobs = [(j.decode(errors="replace") if isinstance(j, bytes) else str(j), float(s)) for j, s in pending]
    # started jobs first (by lease deadline), then the queued ones
    jobs.sort(key=lambda js: (math.isinf(js[1]), js[1], js[0]))
    fields = [Counters.size(j) for j, _ in jobs]
    if opener is not None:
        fields += [Counters.start(j) for j, _ in jobs]
    values = r.hmget(k.n, fields) if fields else []
    in_flight = []
    for i, (jid, score) in enumerate(jobs):
        try:
            j = JobId.parse(jid)
            chunk, gen = j.chunk, j.gen
        except ValueError:
            chunk, gen = "?", 0
        size = values[i]
        entry: dict[str, Any] = {
            "job": jid,
            "chunk": chunk,
            "generation": gen,
            "records": int(size) if size is not None else None,
            "worker": workers_by_job.get(jid),
            **_lease(score, now),
        }
        if opener is not None and (sealed := values[len(jobs) + i]) is not None:
            try:
                note = opener.start_note(
                    workload_id, jid, sealed if isinstance(sealed, bytes) else str(sealed).encode()
                )
                entry["started_at"] = note.get("started_at")
                entry["worker"] = note.get("worker") or entry["worker"]
            except RqpError:
                entry["note_error"] = "start note failed authentication"
        in_flight.append(entry)

    retries = [RetryEntry.parse(m, float(due)) for m, due in retry_head]
    by_attempt: dict[int, int] = {}
    for e in retries:
        by_attempt[e.attempt] = by_attempt.get(e.attempt, 0) + 1

    timeline = [{"what": "packed", "at": manifests.packed_at(workload_id)}]
    # a junk manifest.json: the page says so in one line (the console's own reading, if it has one)
    unreadable = (opener.unreadable.get(workload_id) if opener is not None else None) or manifests.unreadable(
        workload_id
    )
    if unreadable:
        row["unreadable"] = unreadable
    if row["started_at"]:
        timeline.append({"what": "started", "at": row["started_at"]})
    for a in reversed(read_audit(r, operators, submitters, AUDIT_SCAN)):
        if a.workload == workload_id:
            who = a.who if a.verified else f"{a.who} (UNVERIFIED: {a.note})"
            timeline.append({"what": a.what, "at": a.at, "who": who, "verified": a.verified})
    if row["finished_at"] and row["state"] in (State.DONE, State.FAILED, State.CANCELLED):
        timeline.append({"what": row["state"], "at": row["finished_at"]})

    backlog: dict[str, Any] = {"outbox": int(outbox), "status_queue": settings.status_queue, "status_length": None}
    if mq is not None:
        try:
            backlog["status_length"] = mq.length(settings.status_queue)
        except (RqpError, redis.RedisError) as exc:
            backlog["status_error"] = str(exc).split("\n")[0]

    if row["state"] == State.FAILED:
        _failed_as_a_whole(r, workload_id, row, opener)
    if opener is not None and row["state"] in (State.DONE, State.CANCELLED):
        row["results_root"] = _results_root(workload_id, opener, settings)
    row["throughput"] = [[round(t, 3), round(v, 1)] for t, v in history.rates(workload_id, limit=900)]
    row.update(
        {
            "timeline": timeline,
            "in_flight": in_flight,
            "in_flight_total": int(pending_n),
            "in_flight_started": int(started_n),
            "retries": {
                "waiting": row["retrying"],
                "due_now": int(due_now),
                "next_due": retries[0].due if retries else None,
                "by_attempt": [[a, n] for a, n in sorted(by_attempt.items())],
                "sampled": len(retries),
            },
            "backlog": backlog,
            "actions": allowed_actions(row),
            "decrypting": opener is not None,
            "now": now,
        }
    )
    return row
