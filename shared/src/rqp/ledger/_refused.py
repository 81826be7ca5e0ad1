"""Refused submissions: why the scheduler would not run a workload it was handed (untrusted or
no signature, tampered with, a key that does not unwrap, revoked, expired, deleted once), kept
where ``rqp status``, ``rqp list``, ``rqp submit`` and the console look -- the scheduler's log
alone was invisible to the person who submitted it.

A refusal is plain JSON in Redis, written by the scheduler, and nothing acts on it: the scheduler
never reads it (a workload it can open runs, whatever this hash says, and its start removes the
entry); readers show it only for a workload Redis holds no state of, labelled unverified, and only
while the manifest in the blob store is still the one refused (``manifest_sha256``), so a
re-packed workload is not shown refused for its predecessor. A Redis writer can therefore forge or
hide a refusal of a workload that has not started -- shown as what it is -- and nothing more.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass

import redis

from ._codecs import text
from ._keys import REFUSED

__all__ = ["REFUSED_KEEP", "Refusal", "clear_refusal", "manifest_sha256", "read_refusal", "record_refusal", "refusals"]

#: refusals kept at most: past this a new one goes to the scheduler's log only (a Redis writer
#: pushing junk submissions cannot grow the hash without bound through the scheduler)
REFUSED_KEEP = 1000


@dataclass(frozen=True)
class Refusal:
    """Why the scheduler refused workload ``workload``, as the scheduler wrote it in Redis."""

    workload: str
    reason: str
    #: the exit code of the refusal's error (``rqp.errors``: 4 integrity, 7 not found, ...)
    code: int
    at: float
    #: the scheduler (host:pid) that refused it
    by: str
    #: SHA-256 of the manifest.json bytes it refused (None: there was none)
    manifest: str | None

    def to_json(self) -> str:
        return json.dumps(
            {"reason": self.reason, "code": self.code, "at": self.at, "by": self.by, "manifest": self.manifest},
            separators=(",", ":"),
        )

    @classmethod
    def parse(cls, workload: str, raw: object) -> Refusal:
        """An entry as Redis holds it; one rqp did not write reads as an unreadable refusal."""
        try:
            d = json.loads(text(raw) or "")
            if not math.isfinite(float(d["at"])):  # NaN/Infinity: never rqp's, and not JSON out again
                raise ValueError("a non-finite time")
            return cls(
                workload, str(d["reason"]), int(d["code"]), float(d["at"]), str(d["by"]),
                None if d.get("manifest") is None else str(d["manifest"]),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return cls(workload, "unreadable refusal entry (not rqp's)", 4, 0.0, "?", None)


def manifest_sha256(raw: bytes | None) -> str | None:
    return None if raw is None else hashlib.sha256(raw).hexdigest()


def record_refusal(
    r: redis.Redis, workload: str, reason: str, code: int, by: str, manifest: str | None, now: float | None = None
) -> bool:
    """Keep the scheduler's refusal of ``workload``; False when ``REFUSED_KEEP`` are kept already."""
    entry = Refusal(workload, reason, code, time.time() if now is None else now, by, manifest)
    if r.hlen(REFUSED) >= REFUSED_KEEP and not r.hexists(REFUSED, workload):
        return False
    r.hset(REFUSED, workload, entry.to_json())
    return True


def _wrong_type(exc: redis.ResponseError) -> bool:
    """``REFUSED`` holds another Redis type: junk a Redis writer left (rqp writes only a hash)."""
    return str(exc).startswith("WRONGTYPE")


def read_refusal(r: redis.Redis, workload: str) -> Refusal | None:
    """The kept refusal of ``workload``; None when there is none, or ``REFUSED`` is junk of
    another type (no refusal is shown: it is advisory, and the reader must not fail on it)."""
    try:
        raw = r.hget(REFUSED, workload)
    except redis.ResponseError as exc:
        if not _wrong_type(exc):
            raise
        return None
    return None if raw is None else Refusal.parse(workload, raw)


def refusals(r: redis.Redis) -> dict[str, Refusal]:
    """Every kept refusal, by workload id (none when ``REFUSED`` is junk of another type)."""
    try:
        kept = r.hgetall(REFUSED)
    except redis.ResponseError as exc:
        if not _wrong_type(exc):
            raise
        return {}
    return {w: Refusal.parse(w, raw) for k, raw in kept.items() if (w := text(k)) is not None}


def clear_refusal(r: redis.Redis, workload: str) -> None:
    """The workload started (or was submitted again as a new version): its refusal is history.
    ``REFUSED`` of another type holds no refusal of it: nothing to clear."""
    try:
        r.hdel(REFUSED, workload)
    except redis.ResponseError as exc:
        if not _wrong_type(exc):
            raise
