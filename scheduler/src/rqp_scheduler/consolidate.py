"""Merge committed result parts into one encrypted results object and write the summary.

Four steps, each its own function:

* **collect** -- which result parts the commits named: data chunks in record order, retry chunks
  (their records are scattered, and few) loaded up front;
* **merge** -- every record's result exactly once, in record order, from this run's parts and,
  for a workload run again by ``rqp retry``, the earlier run's results;
* **write** -- the lines into ``results.enc``, an rqp stream whose AAD binds the workload (a
  results object swapped between workloads does not decrypt), hashed on the way;
* **summarize** -- counts, failures with their reasons, and the results' digest, sealed.

Memory stays at one part plus the results of retry chunks, whatever the workload's size.
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rqp.crypto import aad, decrypt_stream, encrypt_stream
from rqp.errors import IntegrityError
from rqp.ledger import ChunkKind, Ledger, Meta
from rqp.parts import decode_part
from rqp.status import StatusRecord
from rqp.summary import RESULTS_BLOB, SUMMARY_BLOB, Failure, ResultsInfo, Summary
from rqp.workload import Workload, blob_name

__all__ = [
    "PREVIOUS_BLOB",
    "RESULTS_BLOB",
    "SUMMARY_BLOB",
    "Parts",
    "collect",
    "consolidate",
    "merge",
    "summarize",
    "write_results",
]

#: an earlier run's results, kept while a retried workload's new results are written
PREVIOUS_BLOB = "results.previous.enc"
_WRITE_BATCH = 1 << 16
#: failed records' statuses read per round trip
_FAILURE_BATCH = 1000


@dataclass
class Parts:
    """The result parts a workload's commits named."""

    #: (first id, last id, blob name) of data chunks, in record order
    ordered: list[tuple[int, int, str]] = field(default_factory=list)
    #: record id -> sealed result, from retry chunks
    retried: dict[int, bytes] = field(default_factory=dict)


def collect(ledger: Ledger, store: Any) -> Parts:
    parts = Parts()
    for chunk, ref in ledger.parts().items():
        if ChunkKind.of(chunk) is ChunkKind.RETRY:
            if ref.name:
                parts.retried.update(decode_part(store.get(ref.name), ref.name))
        else:
            parts.ordered.append((ref.first, ref.last, ref.name))
    parts.ordered.sort()
    return parts


def _line(workload: Workload, rid: int, sealed: bytes) -> bytes:
    return b'{"id":%d,"result":%s}\n' % (rid, workload.open_sealed("result", rid, sealed))


def _this_run(parts: Parts, store: Any, workload: Workload) -> Iterator[tuple[int, bytes]]:
    """(record id, result line) in record order from this run's parts."""
    retried = dict(parts.retried)
    for first, last, name in parts.ordered:
        part = dict(decode_part(store.get(name), name)) if name else {}
        for rid in range(first, last + 1):
            sealed = part.get(rid) or retried.pop(rid, None)
            if sealed is not None:
                yield rid, _line(workload, rid, sealed)
    for rid in sorted(retried):
        yield rid, _line(workload, rid, retried[rid])


def _earlier_run(store: Any, workload: Workload, name: str) -> Iterator[tuple[int, bytes]]:
    """(record id, result line) of an earlier run's results, streamed: a retried workload's
    results may be far larger than memory."""
    rest = b""
    what = f"previous results of workload {workload.id}"
    for piece in decrypt_stream(workload.key, store.iter_chunks(name), aad("results", workload.id), what):
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield int(line[6 : line.index(b",")]), line + b"\n"


def merge(sources: Iterable[Iterator[tuple[int, bytes]]], done_bits: bytes, counter: list[int]) -> Iterator[bytes]:
    """Result lines in record order, each record once and only if its done bit is set, batched
    for writing; ``counter[0]`` counts the results."""
    emitted = bytearray(len(done_bits))
    buf: list[bytes] = []
    size = 0
    for rid, line in heapq.merge(*sources, key=lambda x: x[0]):
        byte, bit = divmod(rid, 8)
        if byte >= len(emitted) or emitted[byte] & (0x80 >> bit) or not done_bits[byte] & (0x80 >> bit):
            continue  # not marked done, or already written: never twice
        emitted[byte] |= 0x80 >> bit
        counter[0] += 1
        buf.append(line)
        size += len(line)
        if size >= _WRITE_BATCH:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)


def write_results(store: Any, workload: Workload, lines: Iterator[bytes], count: list[int]) -> ResultsInfo:
    digest = hashlib.sha256()
    size = 0

    def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
        nonlocal size
        for c in chunks:
            digest.update(c)
            size += len(c)
            yield c

    name = blob_name(workload.id, RESULTS_BLOB)
    store.put_stream(name, hashed(encrypt_stream(workload.key, lines, aad("results", workload.id))))
    return ResultsInfo(name, size, digest.hexdigest(), count[0])


def failures(ledger: Ledger, workload: Workload) -> list[Failure]:
    out = []
    ids = ledger.failed_ids()
    for i in range(0, len(ids), _FAILURE_BATCH):
        batch = ids[i : i + _FAILURE_BATCH]
        for rid, sealed in zip(batch, ledger.statuses(batch), strict=True):
            if sealed is None:
                out.append(Failure(rid, "status record missing", None))
                continue
            st = StatusRecord.open(workload, rid, sealed)
            out.append(Failure(rid, st.error, st.attempts))
    return out


def summarize(ledger: Ledger, workload: Workload, results: ResultsInfo, failed: list[Failure]) -> Summary:
    """The summary; ``IntegrityError`` when results and failures do not account for every record."""
    meta = ledger.meta()
    total = int(meta.get(Meta.TOTAL, results.count + len(failed)))
    if results.count + len(failed) != total:
        raise IntegrityError(
            f"workload {workload.id}: {results.count} results and {len(failed)} failures do not add up to {total} records; "
            f"a result part is missing or was modified -- re-run with 'rqp retry {workload.id}'"
        )
    started = float(meta.get(Meta.STARTED_AT, time.time()))
    finished = time.time()
    elapsed = max(finished - started, 1e-9)
    return Summary(
        workload=workload.id, total=total, done=results.count, failed=len(failed), started_at=started, finished_at=finished,
        elapsed=round(elapsed, 3), records_per_second=round(total / elapsed, 1), chunks=int(meta.get(Meta.CHUNKS, 0)),
        reclaimed_chunks=int(meta.get(Meta.RECLAIMED, 0)), results=results, failures=failed,
    )  # fmt: skip


def consolidate(ledger: Ledger, store: Any, workload: Workload, *, keep_parts: bool = False) -> Summary:
    parts = collect(ledger, store)
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
    sources = [_this_run(parts, store, workload)]
    if previous is not None:  # re-opened by 'rqp retry': keep what the last run produced
        sources.append(_earlier_run(store, workload, previous))
    count = [0]
    results = write_results(store, workload, merge(sources, ledger.done_bitmap(), count), count)
    summary = summarize(ledger, workload, results, failures(ledger, workload))
    store.put(blob_name(workload.id, SUMMARY_BLOB), summary.seal(workload))
    if previous is not None:
        store.delete(previous)
    if not keep_parts:
        for name in store.list(blob_name(workload.id, "parts/")):
            store.delete(name)
    return summary
