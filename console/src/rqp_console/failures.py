"""What is failing: a workload's failed and retrying records, grouped, and one record's story.

A record's reason (its status record) is sealed under the workload's data key: the script's
exception message may quote the data. Without the KEK the console shows what Redis holds in the
clear -- which records failed for good and which wait for a retry, at which attempt, and how
many of each -- and says that the reasons are sealed. Given the KEK (``sealed.Opener``) it
decrypts the statuses and groups them by error category and message pattern ("ValueError: amount #
is negative 619, ValueError: Invalid isoformat string: '…' 41, KeyError 282"), and shows each
record by the data's own id when it was packed with ``--id-field``.

Bounded work, whatever the workload's size: the failed and retrying records are found by
scanning the hash of records that are *not* done (``st``; a done record has no entry there),
at most ``SCAN_MAX`` of them per look, plus one GETBIT each; never a bitmap read whole.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict
from typing import Any

import redis

from rqp.errors import RqpError, WorkloadError
from rqp.ledger import Counters, Ledger, Meta, RetryEntry, WorkloadKeys

from .sealed import Opener

__all__ = ["GROUPS_SHOWN", "SCAN_IDS", "SCAN_MAX", "category", "failures_view", "pattern", "record_view"]

#: statuses looked at and decrypted per look, with the KEK (to group them by error)
SCAN_MAX = 2000
#: statuses looked at without the KEK (only ids are shown then)
SCAN_IDS = 200
#: record ids listed per group
IDS_SHOWN = 15

_RAISED = re.compile(r"^(?:process|setup|parse)\(\) raised ([A-Za-z_][\w.]*)")
#: the values a message quotes or counts, which vary from record to record ("amount -5", "'2026-13-01'")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:[.,:]\d+)*(?:e[-+]?\d+)?")
#: where in the script an error was raised, as rqp appends it: " (line 10)"
_WHERE = re.compile(r"\s*\(line \d+\)\s*$")
#: a message pattern's length at most (a record's data can make a message long)
PATTERN_CHARS = 120
#: failure groups listed at most; the rest are counted together
GROUPS_SHOWN = 12


def pattern(error: str | None) -> str:
    """An error line with what varies between records taken out -- quoted values become '…' and
    numbers #, the exception type's prefix dropped -- so one exception type raised for different
    reasons ("negative amount", "Invalid isoformat string") makes one group per reason."""
    if not error:
        return ""
    text = error
    if m := _RAISED.match(text):
        text = text[m.end() :].lstrip(": ")
    # a message that is only a quoted value names the thing (KeyError: 'customer'): kept
    if not _QUOTED.fullmatch(_WHERE.sub("", text).strip()):
        text = _QUOTED.sub("'…'", text)
    text = _NUMBER.sub("#", text)
    text = " ".join(text.split())
    return text[:PATTERN_CHARS] + ("…" if len(text) > PATTERN_CHARS else "")


def category(error: str | None) -> str:
    """An error line's kind: the exception type a script raised, or what rqp itself decided."""
    if not error:
        return "no reason recorded"
    if m := _RAISED.match(error):
        return m.group(1)
    low = error.lower()
    if low.startswith("timed out"):
        return "timed out (RQP_RECORD_TIMEOUT)"
    if "script process" in low and ("while processing" in low or "died" in low or "killed" in low):
        return "script process died"
    if low.startswith("malformed record"):
        return "malformed record"
    if "failed authentication" in low:
        return "failed authentication (tampered)"
    head = error.split(":", 1)[0].strip()
    return head[:48] + ("…" if len(head) > 48 else "")


def _scan_not_done(r: redis.Redis, key: str, limit: int) -> tuple[dict[int, bytes], bool]:
    """Up to ``limit`` (record id -> sealed status) of ``st``; True when there were more."""
    found: dict[int, bytes] = {}
    cursor = 0
    while True:
        cursor, batch = r.hscan(key, cursor, count=500)
        for field, value in batch.items() if isinstance(batch, dict) else ():
            if len(found) >= limit:
                return found, True
            try:
                found[int(field)] = value if isinstance(value, bytes) else str(value).encode()
            except ValueError:
                continue
        if cursor == 0:
            return found, False


def failures_view(r: redis.Redis, workload_id: str, opener: Opener | None, limit: int | None = None) -> dict[str, Any]:
    limit = limit or (SCAN_MAX if opener is not None else SCAN_IDS)
    k = WorkloadKeys(workload_id)
    statuses, more = _scan_not_done(r, k.st, limit)
    ids = sorted(statuses)
    pipe = r.pipeline(transaction=False)
    for rid in ids:
        pipe.getbit(k.failed, rid)
    pipe.hget(k.n, Counters.FAILED)
    pipe.zcard(k.retry)
    pipe.zrange(k.retry, 0, limit - 1)
    *bits, failed_total, retrying_total, retry_members = pipe.execute()
    failed_ids = [rid for rid, bit in zip(ids, bits, strict=True) if bit]
    attempts: dict[int, int] = {}
    for m in retry_members:
        e = RetryEntry.parse(m)
        attempts[e.rid] = max(attempts.get(e.rid, 0), e.attempt)
    retrying_ids = sorted(attempts)

    groups: list[dict[str, Any]] = []
    undecryptable = 0
    #: record id -> the data's own id (``rqp pack --id-field``), for the records shown; sealed, so only with the KEK
    keys: dict[str, str] = {}
    if opener is not None:
        by_kind: dict[tuple[str, str], list[int]] = {}
        example: dict[tuple[str, str], str] = {}
        all_keys: dict[int, str] = {}
        for rid in failed_ids:
            try:
                st = opener.status(workload_id, rid, statuses[rid])
            except RqpError:
                undecryptable += 1
                continue
            kind = (category(st.error), pattern(st.error))
            by_kind.setdefault(kind, []).append(rid)
            example.setdefault(kind, st.error or "")
            if st.key is not None:
                all_keys[rid] = st.key
        ordered = sorted(by_kind.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        for (cat, pat), rids in ordered[:GROUPS_SHOWN]:
            groups.append(
                {
                    "category": cat,
                    "pattern": pat,
                    "count": len(rids),
                    "ids": rids[:IDS_SHOWN],
                    "example": example[(cat, pat)],
                }
            )
        rest = [rid for _, rids in ordered[GROUPS_SHOWN:] for rid in rids]
        if rest:
            groups.append(
                {
                    "category": "other reasons",
                    "pattern": f"{len(ordered) - GROUPS_SHOWN} more kinds",
                    "count": len(rest),
                    "ids": sorted(rest)[:IDS_SHOWN],
                }
            )
        keys = {str(rid): all_keys[rid] for g in groups for rid in g["ids"] if rid in all_keys}
    elif failed_ids:
        groups.append(
            {"category": "failed for good (reason sealed)", "count": len(failed_ids), "ids": failed_ids[:IDS_SHOWN]}
        )
    by_attempt = Counter(attempts.values())
    retry_groups = [
        {
            "category": f"waiting to run as attempt {a}",
            "count": n,
            "ids": [rid for rid in retrying_ids if attempts[rid] == a][:IDS_SHOWN],
        }
        for a, n in sorted(by_attempt.items())
    ]
    return {
        "workload": workload_id,
        "failed": max(0, int(failed_total or 0)),
        "retrying": int(retrying_total),
        "looked_at": len(ids),
        "partial": more,
        "groups": groups,
        "retry_groups": retry_groups,
        "undecryptable": undecryptable,
        "keys": keys,
        "decrypting": opener is not None,
    }


def record_view(r: redis.Redis, workload_id: str, rid: int, opener: Opener | None) -> dict[str, Any]:
    """One record: with the KEK its full status record (reason included), else what Redis says
    in the clear. ``RqpError`` (one line) for a record that is not part of the workload."""
    if opener is not None:
        st = opener.record(r, workload_id, rid)
        return {**asdict(st), "decrypted": True}
    led = Ledger(r, workload_id)
    enqueued, total, done, failed = led.record_facts(rid)
    if enqueued is None:
        raise WorkloadError(f"workload {workload_id} is not known to Redis")
    if (total is not None and rid >= total) or rid < 0:
        raise WorkloadError(f"workload {workload_id} has no record {rid}")
    k = WorkloadKeys(workload_id)
    max_attempts = int(led.meta().get(Meta.MAX_ATTEMPTS) or 3)
    pipe = r.pipeline(transaction=False)
    pipe.hexists(k.st, str(rid))
    for a in range(1, max_attempts + 1):
        pipe.zscore(k.retry, RetryEntry(rid, a).member)
    has_status, *dues = pipe.execute()
    retry = [(a, float(d)) for a, d in enumerate(dues, start=1) if d is not None]
    if done:
        state = "done"
    elif failed:
        state = "failed"
    elif retry:
        state = "waiting for retry"
    elif rid < enqueued:
        state = "queued or processing"
    else:
        state = "not queued yet"
    return {
        "workload": workload_id,
        "id": rid,
        "state": state,
        "attempts": (retry[-1][0] - 1) if retry else None,
        "retry_due": retry[-1][1] if retry else None,
        "has_sealed_status": bool(has_status),
        "error": None,
        "decrypted": False,
        "note": "the reason is sealed under the workload's key; start the console with RQP_KEK_FILE to read it",
    }
