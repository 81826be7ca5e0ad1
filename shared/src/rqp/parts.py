"""Result parts: the encrypted results of one chunk, one blob per job.

A part is ``b"RQPP1"`` then entries ``rid(u64) length(u32) sealed_result``; each result is sealed
on its own with AAD ``result|W|rid`` under the committing job's key (``Workload.scope``), so a part
(or an entry) moved to another workload, record or job fails to open. A workload packed with
``--id-field`` seals the record's own id (JSON), a tab, then the result. The chunk's commit names the one part that counts; parts of jobs that lost their
lease are orphans and are deleted at consolidation.

A processor builds its part as results arrive (``PartWriter``): each batch is sealed at once, the
sealed entries stay in memory up to ``PART_MEMORY_BYTES`` and go to an unnamed temporary file past
it (ciphertext only: plaintext is never written to disk), and a spilled part is uploaded as a
stream -- so a worker's memory for results does not grow with the chunk, whatever a script returns.
"""

from __future__ import annotations

import re
import struct
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

from .errors import IntegrityError
from .storage import BlobStore
from .workload import Seals, Workload

__all__ = [
    "PART_MEMORY_BYTES",
    "PART_TOKEN_BYTES",
    "PartWriter",
    "decode_part",
    "encode_part",
    "iter_part",
    "part_blob",
    "part_name",
    "seal_part",
]

#: sealed results a processor holds in memory for one part; past it they spill to a temporary file
PART_MEMORY_BYTES = 16 << 20
#: the pieces a spilled part is read back and uploaded in
UPLOAD_PIECE_BYTES = 4 << 20

MAGIC = b"RQPP1"
_ENTRY = struct.Struct(">QI")
#: an entry's header (record id, sealed length), for readers that walk a part inline
ENTRY = _ENTRY


def part_blob(workload_id: str, jid_suffix: str) -> str:
    return f"workloads/{workload_id}/parts/{jid_suffix}.part"


#: bytes of a chunk's part token (``ChunkSpec.part``), written as hex
PART_TOKEN_BYTES = 8
_TOKEN = re.compile(f"[0-9a-f]{{{2 * PART_TOKEN_BYTES}}}")


def part_name(workload_id: str, chunk: str, gen: int, token: str) -> str:
    """The results part of generation ``gen`` of ``chunk``: with the chunk's token (a spec or a
    note sealed without one -- an older version's -- names ``chunk-gen`` alone). ``IntegrityError``
    for a token that is not one (it is sealed under the data key, which processors hold: never a
    path)."""
    if not token:
        return part_blob(workload_id, f"{chunk}-{gen}")
    if not _TOKEN.fullmatch(token):
        raise IntegrityError(f"chunk {chunk} of workload {workload_id} names a results part token that is not one")
    return part_blob(workload_id, f"{chunk}-{gen}-{token}")


def encode_part(entries: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(MAGIC)
    for rid, sealed in entries:
        out += _ENTRY.pack(rid, len(sealed))
        out += sealed
    return bytes(out)


def seal_part(workload: Workload | Seals, results: list[tuple[int, bytes]]) -> bytes:
    """Seal plaintext results and encode them as a part in one pass (``Workload.seal_packed``
    with the part's entry header): the same bytes as ``encode_part`` of each result sealed."""
    return MAGIC + workload.seal_packed("result", results, header=_ENTRY)


def iter_part(chunks: Iterable[bytes], name: str) -> Iterator[tuple[int, bytes]]:
    """``decode_part`` over a part read in pieces (``BlobStore.iter_chunks``): holds one piece and
    at most one entry in memory, so a part of large results never sits in memory whole. Entries
    are sliced at an offset (the consumed front is dropped once per piece, not per entry)."""
    buf = b""
    pos = 0
    started = False
    for piece in chunks:
        buf = buf[pos:] + piece if pos < len(buf) else piece
        pos = 0
        if not started:
            if len(buf) < len(MAGIC):
                continue
            if not buf.startswith(MAGIC):
                raise IntegrityError(
                    f"result part {name} is not an rqp result part (bad header): replaced or corrupted"
                )
            pos = len(MAGIC)
            started = True
        end = len(buf)
        while end - pos >= _ENTRY.size:
            rid, n = _ENTRY.unpack_from(buf, pos)
            if end - pos < _ENTRY.size + n:
                break
            yield rid, buf[pos + _ENTRY.size : pos + _ENTRY.size + n]
            pos += _ENTRY.size + n
    if not started or pos < len(buf):
        raise IntegrityError(f"result part {name} is truncated" if started else f"result part {name} is empty")


def decode_part(raw: bytes, name: str) -> Iterator[tuple[int, bytes]]:
    if not raw.startswith(MAGIC):
        raise IntegrityError(f"result part {name} is not an rqp result part (bad header): replaced or corrupted")
    pos = len(MAGIC)
    end = len(raw)
    while pos < end:
        if pos + _ENTRY.size > end:
            raise IntegrityError(f"result part {name} is truncated")
        rid, n = _ENTRY.unpack_from(raw, pos)
        pos += _ENTRY.size
        if pos + n > end:
            raise IntegrityError(f"result part {name} is truncated")
        yield rid, raw[pos : pos + n]
        pos += n


class PartWriter:
    """One part, built as results arrive: the same bytes as ``seal_part`` of all of them, without
    holding them all. Sealed entries stay in memory up to ``budget`` bytes (the common case: one
    upload, no file), then everything goes to an unnamed temporary file, which the kernel removes
    even when the worker is killed. Close it when done (``with``)."""

    def __init__(self, seals: Workload | Seals, budget: int | None = None, spill_dir: str | None = None) -> None:
        self.seals = seals
        self.budget = PART_MEMORY_BYTES if budget is None else budget
        self.spill_dir = spill_dir
        #: results sealed into the part so far
        self.entries = 0
        #: the part's size in bytes so far
        self.size = len(MAGIC)
        self._mem = bytearray(MAGIC)
        self._file: IO[bytes] | None = None

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def add(self, results: list[tuple[int, bytes]]) -> None:
        """Seal ``(rid, plaintext)`` results (one pass for the lot) and append their entries."""
        if not results:
            return
        sealed = self.seals.seal_packed("result", results, header=_ENTRY)
        self.entries += len(results)
        self.size += len(sealed)
        if self._file is None:
            if len(self._mem) + len(sealed) <= self.budget:
                self._mem += sealed
                return
            self._file = tempfile.TemporaryFile(prefix="rqp-part-", dir=self.spill_dir)  # noqa: SIM115 - closed by close()
            self._file.write(self._mem)
            self._mem = bytearray()
        self._file.write(sealed)

    def upload(self, store: BlobStore, name: str) -> None:
        """Store the part as blob ``name``: in one write when it stayed in memory, else streamed."""
        if self._file is None:
            store.put(name, bytes(self._mem))
            return
        fh = self._file
        fh.flush()
        fh.seek(0)
        store.put_stream(name, iter(lambda: fh.read(UPLOAD_PIECE_BYTES), b""))

    def close(self) -> None:
        self._mem = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
