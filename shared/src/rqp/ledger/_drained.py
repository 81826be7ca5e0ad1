"""Chunks handed back by a draining processor: an eviction notice (Azure ``Preempt``, or
``Terminate`` for a scale-in), SIGTERM or a scale-down, not a failure.

A processor told its VM goes away stops its workers taking chunks; a worker that cannot finish
its chunk before the VM goes is stopped and the chunk handed back at once (``hand_back_drained``):
its lease ends now, so the scheduler re-runs it within a second instead of after the lease, and
the field ``d:<job id>`` in the workload's counters says it was drained. The scheduler's reclaim
reads and clears that mark (``take_drained``): such a re-run spends no attempt of its records
and does not count against ``FREE_LOST_RERUNS`` (a drained worker was not lost to its chunk);
its records are counted apart, in the ``preempted`` field of the workload's meta, which
``rqp status``, the console and the summary show as "requeued after preemption".

What a Redis writer can do with the mark: make a lost chunk's re-run free when it was not -- a
record that kills its worker then re-runs without spending attempts, which stalls that one
workload; what runs and what commits are still decided by the sealed specs and START/COMMIT.
"""

from __future__ import annotations

import time

import redis
from redis.client import Pipeline

from ._codecs import JobId, text
from ._keys import WorkloadKeys, held_key

__all__ = [
    "DRAINED_SECONDS",
    "MAX_DRAINED_SECONDS",
    "MAX_PREEMPTIONS_PER_RECORD",
    "PREEMPTED",
    "count_preempted",
    "drained_field",
    "drained_seconds",
    "hand_back_drained",
    "preempted",
    "take_drained",
]

#: field of the workload's meta hash: records requeued after a preemption or a drain (not attempts)
PREEMPTED = "preempted"
#: fields ``drained_seconds:<host>`` of the meta hash: processor-seconds the chunks handed back by
#: that VM had run (lost: they re-run whole), what its evictions cost the workload
DRAINED_SECONDS = "drained_seconds:"
#: the most drained seconds one host's field may say (a year): more is a Redis writer's (a plain
#: field), left out so that sums by VM stay finite and the sealed summary strict JSON
MAX_DRAINED_SECONDS = 365 * 86400.0
#: the most times a record is believably requeued after preemption; a ``preempted`` count above
#: this many per record is a Redis writer's and is not sealed into the summary
MAX_PREEMPTIONS_PER_RECORD = 100


def drained_field(jid: str) -> str:
    """Field of ``rqp:w:W:n``: set when a draining processor handed ``jid`` back."""
    return f"d:{jid}"


def hand_back_drained(r: redis.Redis, worker: str, now: float | None = None, spent: float | None = None) -> str | None:
    """End the lease of the chunk ``worker`` (``host:pid``, already stopped) held, marked as
    drained; its job id, or None when it held none or the chunk committed or was reclaimed first
    (then nothing is written: a mark is only ever left on a lease that was still held). ``spent``:
    the seconds the chunk had run, added to its VM's ``drained_seconds``."""
    held = held_key(worker)
    jid = text(r.get(held))
    if jid is None:
        return None
    try:
        keys = WorkloadKeys(JobId.parse(jid).workload)
    except ValueError:
        r.delete(held)
        return None
    at = time.time() if now is None else now

    with r.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(keys.pending)
                score = pipe.zscore(keys.pending, jid)
                pipe.multi()
                pipe.delete(held)
                mine = score is not None and float(score) != float("inf")
                if mine:  # else committed, reclaimed or queued again: not this worker's any more
                    pipe.hset(keys.n, drained_field(jid), worker)
                    pipe.zadd(keys.pending, {jid: at}, xx=True, lt=True)
                    if spent is not None and 0 < spent < float("inf"):
                        host = worker.rpartition(":")[0] or worker
                        pipe.hincrbyfloat(keys.meta, DRAINED_SECONDS + host, round(spent, 3))
                pipe.execute()
                return jid if mine else None
            except redis.WatchError:
                continue  # the lease moved meanwhile (a commit, a reclaim): look again


def take_drained(r: redis.Redis, keys: WorkloadKeys, jid: str) -> bool:
    """Whether ``jid`` was handed back by a draining processor; clears the mark."""
    field = drained_field(jid)
    pipe = r.pipeline(transaction=True)
    pipe.hexists(keys.n, field)
    pipe.hdel(keys.n, field)
    was, _ = pipe.execute()
    return bool(was)


def count_preempted(pipe: Pipeline, keys: WorkloadKeys, records: int) -> None:
    """Count ``records`` requeued after a preemption or drain (shown apart from failed attempts)."""
    if records:
        pipe.hincrby(keys.meta, PREEMPTED, records)


def drained_seconds(meta: dict[str, str]) -> dict[str, float]:
    """``drained_seconds`` by host from the workload's meta hash (decoded); junk (not a number in
    [0, ``MAX_DRAINED_SECONDS``]) is left out."""
    out = {}
    for f, v in meta.items():
        if f.startswith(DRAINED_SECONDS) and len(f) > len(DRAINED_SECONDS):
            try:
                seconds = float(v)
            except (TypeError, ValueError):
                continue
            if 0 <= seconds <= MAX_DRAINED_SECONDS:
                out[f[len(DRAINED_SECONDS) :]] = round(seconds, 3)
    return dict(sorted(out.items()))


def preempted(value: object, ceiling: int | None = None) -> int:
    """The meta field's value as a count; junk (not rqp's: not an integer, negative, or above
    ``ceiling`` when given) reads as 0."""
    try:
        n = int(str(text(value) or "0"))
    except ValueError:
        return 0
    if ceiling is not None and n > ceiling:
        return 0
    return max(n, 0)
