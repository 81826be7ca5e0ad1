"""Results as chunks commit, before the workload is consolidated.

A processor commits a chunk by naming its result part and sealing a *chunk note* (which records
it did, under which job) into the ledger, in one atomic script. The consolidation proves the
workload from those notes and reads each note's part under its job's key; this module reads the
same notes and parts the same way while the workload runs -- a note that does not open under the
workload's key, a part of another job or a result sealed for another record is an
``IntegrityError``, exactly as it fails consolidation -- and yields each record's result once.

Once the workload has ended (its parts are deleted after consolidation), what was not yet
yielded comes from the consolidated results, checked against the sealed summary. Each record is
yielded as a ``StreamedResult`` carrying the leaf inputs it came with (``rqp.client._streamed``),
which ``Workload.verify_streamed`` checks against the signed root once it exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

from ..errors import BlobNotFoundError, IntegrityError
from ..jsonsafe import JSONRejected, loads, result_line
from ..ledger import JobId, Ledger, split_keyed_result
from ..parts import ResultRefused, iter_results, part_name
from ..status import ChunkNote
from ..storage import BlobStore
from ..workload import Workload
from ._streamed import StreamedResult

__all__ = ["Seen", "committed_results", "parse_line", "remaining"]


class Seen:
    """Record ids already yielded: one bit each (a workload of 10 million records costs 1.2 MB)."""

    def __init__(self) -> None:
        self.bits = bytearray()
        self.count = 0

    def add(self, rid: int) -> bool:
        """Mark ``rid``; False when it was marked already."""
        byte, bit = rid >> 3, 0x80 >> (rid & 7)
        if byte >= len(self.bits):
            self.bits.extend(bytes(max(byte + 1 - len(self.bits), len(self.bits))))
        if self.bits[byte] & bit:
            return False
        self.bits[byte] |= bit
        self.count += 1
        return True


def parse_line(line: bytes) -> dict[str, Any]:
    """A results line as a record: ``{"id", "result"}`` (and ``"key"`` with ``--id-field``), or
    ``{"id", "error"}`` for a result that is not strict JSON (``rqp.jsonsafe.result_line``)."""
    try:
        doc = loads(line)  # strict JSON, parsed once (the common case)
    except JSONRejected:
        doc = None
    if not (isinstance(doc, dict) and "id" in doc):
        doc = json.loads(result_line(line))
    return cast("dict[str, Any]", doc)


def _line(rid: int, result: bytes, keyed: bool) -> tuple[int, bytes]:
    if keyed:  # the data's own id with the result (rqp pack --id-field)
        key, value = split_keyed_result(result)
        return rid, b'{"id":%d,"key":%s,"result":%s}' % (rid, key, value)
    return rid, b'{"id":%d,"result":%s}' % (rid, result)


def _note_lines(store: BlobStore, workload: Workload, note: ChunkNote) -> Iterator[tuple[int, bytes]]:
    """(record id, results line) of every record ``note`` says its job did, from that job's part
    under that job's key, as ``rqp_scheduler.consolidate`` reads them."""
    job = JobId.parse(note.job)
    name = part_name(workload.id, job.chunk, job.gen, note.part)
    wanted = set(note.done_ids())
    seals = workload.scope(note.job)
    keyed = workload.manifest.id_field is not None
    try:
        # a part of either form (``rqp.parts``); ``wanted`` shrinks as records are yielded, so a
        # record's second result is skipped, as before
        for rid, result in iter_results(store.iter_chunks(name), name, seals, wanted):
            if rid not in wanted:
                continue  # a record this job did not get to commit (it is in another note, or failed)
            wanted.discard(rid)
            yield _line(rid, result, keyed)
    except ResultRefused as exc:
        raise IntegrityError(
            f"the result of record {exc.record} in chunk {note.chunk}'s part of workload {workload.id} is not job "
            f"{note.job}'s: altered; find who can write to the blob store (SECURITY.md)"
        ) from None
    if wanted:
        raise IntegrityError(
            f"the result of record {min(wanted)} is missing from chunk {note.chunk}'s part of workload "
            f"{workload.id}: altered; find who can write to the blob store (SECURITY.md)"
        )


def committed_results(
    ledger: Ledger, store: BlobStore, workload: Workload, seen: Seen, opened: dict[str, bytes]
) -> Iterator[StreamedResult]:
    """The results of the chunks committed since the last call (``opened``: chunk -> the sealed
    note already read), each record not in ``seen``. A part already gone (consolidated) is left
    to the consolidated results."""
    for chunk, sealed in ledger.notes():
        if opened.get(chunk) == sealed:
            continue
        try:
            note = ChunkNote.open(workload, chunk, sealed)
        except IntegrityError:
            raise IntegrityError(
                f"the note of chunk {chunk} of workload {workload.id} does not open under its key: Redis state was "
                f"altered; find who can write to this Redis (SECURITY.md)"
            ) from None
        if note.chunk != chunk:
            raise IntegrityError(f"the note stored for chunk {chunk} of workload {workload.id} is chunk {note.chunk}'s")
        try:
            for rid, line in _note_lines(store, workload, note):
                if seen.add(rid):
                    yield StreamedResult.of(parse_line(line))
        except BlobNotFoundError:
            pass  # its round was consolidated meanwhile: the part is gone, the results have the rest
        opened[chunk] = sealed


def remaining(lines: Iterator[bytes], seen: Seen) -> Iterator[StreamedResult]:
    """The consolidated results not yet yielded."""
    for line in lines:
        if not line:
            continue
        doc = parse_line(line)
        rid = doc.get("id")
        if isinstance(rid, int) and not seen.add(rid):
            continue
        yield StreamedResult.of(doc)
