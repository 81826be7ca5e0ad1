"""Messages on the status and events queues, and the outbox that makes publishing lossless.

A message is a JSON envelope ``{"v":2,"q":..,"kind":..,"workload":..,"id":..,"ct":..}`` whose
payload is sealed with the workload's data key, the AAD binding its destination queue, kind and
message id: a consumer holding the KEK reads it (and only from the queue it was sealed for -- a
Redis writer who re-routes an outbox entry to another queue gets it skipped, not believed),
anyone else sees only which workload it concerns. Status records are packed many
to a message, split so none exceeds the backend's size limit.

A status message's sealed payload is a JSON list of status records, or -- for the done records of
one chunk, which differ only in id and attempts -- ``{"base": record, "runs": [[first id, count,
attempt], ...], "except": [ids not done], "items": [record, ...]}``: one message of a few hundred
bytes for a chunk of thousands of records (``"rows": [[id, attempts], ...]`` when the exceptions
are too many for one message). ``open_envelope`` expands it, so a consumer always gets the list
of full records.

Processors commit status changes and the messages announcing them in one Redis transaction,
into the outbox; publishing to the queue happens after, and whatever a crash leaves in the
outbox the scheduler publishes later. Delivery is therefore at-least-once; message ids let a
consumer drop duplicates.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import IntegrityError
from .workload import Workload

__all__ = [
    "Envelope",
    "make_envelope",
    "make_refusal",
    "open_envelope",
    "pack_messages",
    "pack_statuses",
]

ENVELOPE_VERSION = 2
_ENVELOPE_OVERHEAD = 200


#: the kind of the one message that is not sealed: the scheduler refused a workload it could not
#: (or must not) open, so it has no key of that workload to seal with (``make_refusal``)
REFUSED = "refused"


@dataclass(frozen=True)
class Envelope:
    kind: str
    workload: str
    id: str
    payload: Any
    #: False only for a ``refused`` event: plain, so anyone who can write the queue could have sent it
    verified: bool = True


def make_envelope(workload: Workload, queue: str, kind: str, payload: Any, mid: str | None = None) -> tuple[str, bytes]:
    return _seal_envelope(workload, queue, kind, json.dumps(payload, separators=(",", ":")).encode(), mid)


def make_refusal(queue: str, workload_id: str, reason: str, at: float) -> tuple[str, bytes]:
    """The events queue's word that the scheduler refused ``workload_id`` (untrusted or no
    signature, tampered with, unreadable, ...). Not sealed -- the workload's key is what could not
    be trusted or opened -- so ``open_envelope`` hands it over marked ``verified=False``."""
    mid = uuid.uuid4().hex
    refusal = {"event": REFUSED, "workload": workload_id, "at": at, "reason": reason}
    body = {"v": ENVELOPE_VERSION, "q": queue, "kind": REFUSED, "workload": workload_id, "id": mid, "refusal": refusal}
    return mid, json.dumps(body, separators=(",", ":")).encode()


def _batches(items: list[bytes], budget: int) -> Iterator[list[bytes]]:
    """``items`` in order, grouped so each group joined as a JSON list fits in ``budget`` bytes."""
    batch: list[bytes] = []
    size = 2
    for item in items:
        if batch and size + len(item) + 1 > budget:
            yield batch
            batch, size = [], 2
        batch.append(item)
        size += len(item) + 1
    if batch:
        yield batch


def _budget(limit: int) -> int:
    """Raw payload bytes that fit a ``limit``-byte message: sealing adds 28 bytes, base64 a third."""
    return (limit - _ENVELOPE_OVERHEAD) * 3 // 4 - 28


def pack_messages(workload: Workload, queue: str, kind: str, items: list[bytes], limit: int) -> list[tuple[str, bytes]]:
    """Pack JSON items (already encoded) into as few envelopes for ``queue`` as fit under ``limit`` bytes."""
    return [_envelope_raw(workload, queue, kind, batch) for batch in _batches(items, _budget(limit))]


def pack_statuses(
    workload: Workload,
    queue: str,
    base: bytes,
    runs: list[tuple[int, int, int]],
    not_done: list[int],
    items: list[bytes],
    limit: int,
    keys: list[str] | None = None,
) -> list[tuple[str, bytes]]:
    """Status messages for a chunk: its done records as the chunk's ``runs`` (first id, count,
    attempt) minus ``not_done``, sharing every other field with the status record ``base`` --
    one message of a few hundred bytes for thousands of records -- and ``items`` (full status
    records of the others), as few messages as fit under ``limit`` bytes. ``keys``: the done
    records' own ids (``rqp pack --id-field``), in their order."""
    budget = _budget(limit) - len(base) - 32
    if budget < 256:
        raise ValueError(f"message size limit {limit} is too small for status messages")
    compact: list[tuple[str, bytes]] = []
    if runs:
        compact_doc: dict[str, Any] = {"runs": runs, "except": not_done}
        if keys is not None:
            compact_doc["keys"] = keys
        body = json.dumps(compact_doc, separators=(",", ":")).encode()
        if len(body) <= budget:
            compact = [
                _seal_envelope(workload, queue, "status", b'{"base":' + base + b"," + body[1:-1] + b',"items":[]}')
            ]
        else:  # too many exceptions for one message: the done records as rows
            skip = set(not_done)
            done = [(rid, att) for first, count, att in runs for rid in range(first, first + count) if rid not in skip]
            if keys is None:
                rows = [b"[%d,%d]" % (rid, att) for rid, att in done]
            else:  # [id, attempts, finished_at (null: the base's), key]
                rows = [
                    b"[%d,%d,null,%s]" % (rid, att, json.dumps(k).encode())
                    for (rid, att), k in zip(done, keys, strict=True)
                ]
            compact = [
                _seal_envelope(
                    workload, queue, "status", b'{"base":' + base + b',"rows":[' + b",".join(batch) + b'],"items":[]}'
                )
                for batch in _batches(rows, budget)
            ]
    return compact + pack_messages(workload, queue, "status", items, limit)


def expand_statuses(payload: Any) -> list[dict[str, Any]]:
    """A status message's payload as the list of full status records it stands for."""
    if isinstance(payload, list):
        return payload
    if not isinstance(payload, dict) or not isinstance(payload.get("base"), dict):
        raise ValueError("not a status payload")
    base = payload["base"]
    out = []
    for row in payload.get("rows", []):  # [id, attempts] or [id, attempts, finished_at[, key]]
        rec = {**base, "id": row[0], "attempts": row[1]}
        if len(row) > 2 and row[2] is not None:
            rec["finished_at"] = row[2]
        if len(row) > 3:
            rec["key"] = row[3]
        out.append(rec)
    skip = set(payload.get("except", []))
    keys = iter(payload["keys"]) if "keys" in payload else None
    for first, count, attempt in payload.get("runs", []):
        for rid in range(first, first + count):
            if rid not in skip:
                rec = {**base, "id": rid, "attempts": attempt}
                if keys is not None:
                    rec["key"] = next(keys)
                out.append(rec)
    return out + list(payload.get("items", []))


def _envelope_raw(workload: Workload, queue: str, kind: str, items: list[bytes]) -> tuple[str, bytes]:
    return _seal_envelope(workload, queue, kind, b"[" + b",".join(items) + b"]")


def _seal_envelope(workload: Workload, queue: str, kind: str, raw: bytes, mid: str | None = None) -> tuple[str, bytes]:
    mid = mid or uuid.uuid4().hex
    sealed = workload.seal("msg", f"{queue}|{kind}|{mid}", raw)
    body = json.dumps(
        {
            "v": ENVELOPE_VERSION,
            "q": queue,
            "kind": kind,
            "workload": workload.id,
            "id": mid,
            "ct": base64.b64encode(sealed).decode(),
        },
        separators=(",", ":"),
    ).encode()
    return mid, body


def peek_workload(body: bytes) -> str | None:
    try:
        doc = json.loads(body)
        return doc["workload"] if doc.get("v") == ENVELOPE_VERSION else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def open_envelope(body: bytes, workload_for: Callable[[str], Workload], queue: str) -> Envelope:
    """Decode and authenticate a message read from ``queue``; ``IntegrityError`` (one line) for
    anything that is not rqp's, or that was sealed for another queue."""
    try:
        doc = json.loads(body)
        if doc.get("v") != ENVELOPE_VERSION:
            raise ValueError
        if doc.get("kind") == REFUSED and "ct" not in doc:
            return _refusal(doc, queue)
        dest, kind, wid, mid, ct = doc["q"], doc["kind"], doc["workload"], doc["id"], base64.b64decode(doc["ct"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError("queue message is not an rqp message (bad envelope); it was skipped") from None
    if dest != queue:
        raise IntegrityError(
            f"message {mid} of workload {wid} was sealed for queue {dest!r} but read from {queue!r} "
            f"(moved between queues in Redis); it was skipped"
        )
    workload = workload_for(wid)
    payload = json.loads(workload.open_sealed("msg", f"{queue}|{kind}|{mid}", ct))
    if kind == "status":
        try:
            payload = expand_statuses(payload)
        except (ValueError, TypeError, KeyError):
            raise IntegrityError(
                f"status message {mid} of workload {wid} has a payload rqp cannot read (from a newer rqp?); it was skipped"
            ) from None
    return Envelope(kind, wid, mid, payload)


def _finite(value: Any) -> float:
    """A number rqp would have written: ``ValueError`` for NaN, an infinity or one too large for a
    float (a forged ``"nan"`` or ``1e999`` would reach ``rqp events`` as ``NaN``, not JSON)."""
    try:
        number = float(value)
    except OverflowError:
        raise ValueError("a number too large") from None
    if not math.isfinite(number):
        raise ValueError("a non-finite number")
    return number


def _refusal(doc: dict[str, Any], queue: str) -> Envelope:
    """A ``refused`` event (``make_refusal``), unverified: its payload keeps only the fields a
    refusal has, as text, with ``verified: false``."""
    refusal = doc["refusal"]
    if doc["q"] != queue or not isinstance(refusal, dict):
        raise ValueError
    wid, mid = str(doc["workload"]), str(doc["id"])
    payload = {
        "event": REFUSED, "workload": wid, "at": _finite(refusal.get("at", 0.0)), "reason": str(refusal.get("reason", "")),
        "verified": False,
    }  # fmt: skip
    return Envelope(REFUSED, wid, mid, payload, verified=False)
