"""Merge committed result parts into one encrypted results object and write the summary.

Each record's result is opened (authenticated against its workload and record id) and written
exactly once, in record order, into ``results.enc`` -- an rqp stream whose AAD binds the
workload, so a results object swapped between workloads does not decrypt. Memory stays at one
part plus the (usually few) results of retry chunks, whatever the workload's size.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import redis

from rqp.crypto import aad, encrypt_stream
from rqp.errors import IntegrityError
from rqp.layout import WorkloadKeys
from rqp.parts import decode_part
from rqp.status import StatusRecord, bit_positions
from rqp.workload import Workload, blob_name

__all__ = ["consolidate", "RESULTS_BLOB", "SUMMARY_BLOB"]

RESULTS_BLOB = "results.enc"
SUMMARY_BLOB = "summary.enc"
_WRITE_BATCH = 1 << 16


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

    def lines() -> Iterator[bytes]:
        nonlocal count
        buf: list[bytes] = []
        size = 0

        def emit(rid: int, sealed: bytes) -> bytes | None:
            nonlocal count
            byte, bit = divmod(rid, 8)
            if byte >= len(emitted) or emitted[byte] & (0x80 >> bit):
                return None  # not marked done, or already written: never twice
            if not done_bits[byte] & (0x80 >> bit):
                return None
            emitted[byte] |= 0x80 >> bit
            count += 1
            result = workload.open_sealed("result", rid, sealed)
            return b'{"id":%d,"result":%s}\n' % (rid, result)

        for first, last, name in ordered:
            part = dict(decode_part(store.get(name), name)) if name else {}
            for rid in range(first, last + 1):
                sealed = part.get(rid) or retry_results.pop(rid, None)
                if sealed is None:
                    continue
                line = emit(rid, sealed)
                if line:
                    buf.append(line)
                    size += len(line)
                    if size >= _WRITE_BATCH:
                        yield b"".join(buf)
                        buf, size = [], 0
        for rid in sorted(retry_results):
            line = emit(rid, retry_results[rid])
            if line:
                buf.append(line)
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
    if not keep_parts:
        for name in store.list(blob_name(workload.id, "parts/")):
            store.delete(name)
    return summary
