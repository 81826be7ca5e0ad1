"""Merge committed result parts into one encrypted results object and write the summary.

Each record's result is opened (authenticated against its workload and record id) and written
exactly once, in record order, into ``results.enc`` -- an rqp stream whose AAD binds the
workload, so a results object swapped between workloads does not decrypt. Memory stays at one
part plus the (usually few) results of retry chunks, whatever the workload's size (an earlier
run's results, when a workload is retried, are streamed too).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import time
from collections.abc import Iterator
from typing import Any

import redis
from rqp.crypto import aad, decrypt_stream, encrypt_stream
from rqp.errors import IntegrityError
from rqp.layout import WorkloadKeys
from rqp.parts import decode_part
from rqp.status import StatusRecord, bit_positions
from rqp.workload import Workload, blob_name

__all__ = ["PREVIOUS_BLOB", "RESULTS_BLOB", "SUMMARY_BLOB", "consolidate"]

RESULTS_BLOB = "results.enc"
#: an earlier run's results, kept while a retried workload's new results are written
PREVIOUS_BLOB = "results.previous.enc"
SUMMARY_BLOB = "summary.enc"
_WRITE_BATCH = 1 << 16


def _previous_results(store: Any, workload: Workload, name: str) -> Iterator[tuple[int, bytes]]:
    """(rid, result line) of an earlier run's results, streamed: a retried workload's results
    may be far larger than memory."""
    rest = b""
    for piece in decrypt_stream(
        workload.key,
        store.iter_chunks(name),
        aad("results", workload.id),
        f"previous results of workload {workload.id}",
    ):
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield int(line[6 : line.index(b",")]), line + b"\n"


def consolidate(r: redis.Redis, store: Any, workload: Workload, *, keep_parts: bool = False) -> dict[str, Any]:
    k = WorkloadKeys(workload.id)
    parts = {a.decode(): b.decode() for a, b in r.hgetall(k.parts).items()}
    ordered: list[tuple[int, int, str]] = []
    retry_results: dict[int, bytes] = {}
    for chunk, value in parts.items():
        name, first, last = value.rsplit("|", 2)
        if chunk.startswith("r"):
            if name:
                retry_results.update(decode_part(store.get(name), name))
        else:
            ordered.append((int(first), int(last), name))
    ordered.sort()
    done_bits = r.get(k.done) or b""
    emitted = bytearray(len(done_bits))
    count = 0

    def new_results() -> Iterator[tuple[int, bytes]]:
        """(rid, result line) in record order from this run's parts."""
        for first, last, name in ordered:
            part = dict(decode_part(store.get(name), name)) if name else {}
            for rid in range(first, last + 1):
                sealed = part.get(rid) or retry_results.pop(rid, None)
                if sealed is not None:
                    yield rid, b'{"id":%d,"result":%s}\n' % (rid, workload.open_sealed("result", rid, sealed))
        for rid in sorted(retry_results):
            yield rid, b'{"id":%d,"result":%s}\n' % (rid, workload.open_sealed("result", rid, retry_results[rid]))

    def lines() -> Iterator[bytes]:
        nonlocal count
        buf: list[bytes] = []
        size = 0
        sources = [new_results()]
        if previous is not None:  # re-opened by 'rqp retry': keep what the last run produced
            sources.append(_previous_results(store, workload, previous))
        for rid, line in heapq.merge(*sources, key=lambda x: x[0]):
            byte, bit = divmod(rid, 8)
            if byte >= len(emitted) or emitted[byte] & (0x80 >> bit) or not done_bits[byte] & (0x80 >> bit):
                continue  # not marked done, or already written: never twice
            emitted[byte] |= 0x80 >> bit
            count += 1
            buf.append(line)
            size += len(line)
            if size >= _WRITE_BATCH:
                yield b"".join(buf)
                buf, size = [], 0
        if buf:
            yield b"".join(buf)

    digest = hashlib.sha256()
    size = 0

    def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
        nonlocal size
        for c in chunks:
            digest.update(c)
            size += len(c)
            yield c

    results_name = blob_name(workload.id, RESULTS_BLOB)
    previous: str | None = blob_name(workload.id, PREVIOUS_BLOB)
    if not store.exists(previous):
        if store.exists(results_name):
            # a workload being retried: its earlier results (the records that succeeded then)
            # are copied aside, streamed into the new results and deleted once those are
            # written; a crash in between finds the copy and starts from it again
            store.put_stream(previous, store.iter_chunks(results_name))
        else:
            previous = None
    store.put_stream(results_name, hashed(encrypt_stream(workload.key, lines(), aad("results", workload.id))))

    failed_ids = list(bit_positions(r.get(k.failed)))
    failures = []
    for i in range(0, len(failed_ids), 1000):
        batch = failed_ids[i : i + 1000]
        for rid, sealed in zip(batch, r.hmget(k.st, batch)):
            if sealed is None:
                failures.append({"id": rid, "error": "status record missing", "attempts": None})
                continue
            st = StatusRecord.open(workload, rid, sealed)
            failures.append({"id": rid, "error": st.error, "attempts": st.attempts})
    meta = {a.decode(): b.decode() for a, b in r.hgetall(k.meta).items()}
    total = int(meta.get("total", count + len(failures)))
    if count + len(failures) != total:
        raise IntegrityError(
            f"workload {workload.id}: {count} results and {len(failures)} failures do not add up to {total} records; "
            f"a result part is missing or was modified -- re-run with 'rqp retry {workload.id}'"
        )
    started = float(meta.get("started_at", time.time()))
    finished = time.time()
    elapsed = max(finished - started, 1e-9)
    summary = {
        "workload": workload.id,
        "total": total,
        "done": count,
        "failed": len(failures),
        "started_at": started,
        "finished_at": finished,
        "elapsed": round(elapsed, 3),
        "records_per_second": round(total / elapsed, 1),
        "chunks": int(meta.get("chunks", 0)),
        "reclaimed_chunks": int(meta.get("reclaimed", 0)),
        "results": {"blob": results_name, "size": size, "sha256": digest.hexdigest(), "count": count},
        "failures": failures,
    }
    store.put(blob_name(workload.id, SUMMARY_BLOB), workload.seal("summary", "", json.dumps(summary).encode()))
    if previous is not None:
        store.delete(previous)
    if not keep_parts:
        for name in store.list(blob_name(workload.id, "parts/")):
            store.delete(name)
    return summary
