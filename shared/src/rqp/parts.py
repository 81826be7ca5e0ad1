"""Result parts: the encrypted results of one chunk, one blob per job.

Two forms, told apart by their first five bytes. Both are sealed under the committing job's key
(``Workload.scope``), so a part of another attempt, chunk or workload does not open as this one:

* **``RQPP2``** (written since issue 28's W9 round): groups of results, each ONE AES-GCM value::

      group = u32 body length || nonce(12) || runs || AES-GCM(lengths(u32 LE x n) || results, AAD)
      runs  = u32 k || k x (u64 first id, u32 count)          (big-endian; one run unless ids skip)

  with ``AAD = rqp/results|W|<job>|`` + ``runs``: a group opens only for exactly the record ids
  it names, in that order, for that job of that workload; the lengths are inside the ciphertext,
  so no result boundary moves. A group moved from another part, cut, grown, or with its ids
  edited fails as a whole (``ResultRefused``: one line naming its first record). A processor
  gathers up to ``GROUP_BYTES`` of results before sealing them, so a usual chunk's part is one
  group: one AES-GCM call to write and one to read, instead of one per result (~0.5 µs each).
* **``RQPP1``** (the older form, still read: a part written before an upgrade): entries
  ``rid(u64) length(u32) sealed_result``, each result sealed on its own with AAD
  ``result|W|rid``. A processor still writes it for a chunk whose spec comes from a scheduler
  that reads nothing newer (``rqp.jobs.ChunkSpec.part_form``), so processors and schedulers
  can be upgraded in either order.

A workload packed with ``--id-field`` seals the record's own id (JSON), a tab, then the result.
The chunk's commit names the one part that counts; parts of jobs that lost their lease are
orphans and are deleted at consolidation.

A processor builds its part as results arrive (``PartWriter``): results are sealed a group at a
time (plaintext only in memory, at most ``GROUP_BYTES`` plus one batch), the sealed groups stay
in memory up to ``PART_MEMORY_BYTES`` and go to an unnamed temporary file past it (ciphertext
only: plaintext is never written to disk), and a spilled part is uploaded as a stream -- so a
worker's memory for results does not grow with the chunk, whatever a script returns.
"""

from __future__ import annotations

import os
import re
import struct
import sys
import tempfile
from array import array
from collections.abc import Container, Iterable, Iterator
from itertools import accumulate, chain
from operator import itemgetter
from typing import IO

from cryptography.exceptions import InvalidTag

from .crypto import NONCE_SIZE, TAG_SIZE, aad
from .errors import IntegrityError
from .storage import BlobStore
from .workload import Seals, Workload

__all__ = [
    "GROUP_BYTES",
    "MAGIC",
    "MAGIC_GROUPS",
    "PART_MEMORY_BYTES",
    "PART_TOKEN_BYTES",
    "PartWriter",
    "ResultRefused",
    "decode_part",
    "encode_part",
    "iter_part",
    "iter_results",
    "open_groups",
    "part_blob",
    "part_name",
    "seal_group",
    "seal_part",
]

#: sealed results a processor holds in memory for one part; past it they spill to a temporary file
PART_MEMORY_BYTES = 16 << 20
#: the pieces a spilled part is read back and uploaded in
UPLOAD_PIECE_BYTES = 4 << 20
#: plaintext results a processor gathers before sealing them as one group (a usual part: one group)
GROUP_BYTES = 1 << 20

#: the older form: one sealed value per result
MAGIC = b"RQPP1"
#: the current form: groups of results, one AES-GCM value each
MAGIC_GROUPS = b"RQPP2"
_ENTRY = struct.Struct(">QI")
#: an entry's header (record id, sealed length), for readers that walk a part inline
ENTRY = _ENTRY
_GROUP_LEN = struct.Struct(">I")
_COUNT = struct.Struct(">I")
_RUN = struct.Struct(">QI")
#: a group's lengths are stored little-endian; this host's ``array`` needs swapping when not
_SWAP_LENGTHS = sys.byteorder != "little"


class ResultRefused(IntegrityError):
    """A result of a part (or the group of results sealed with it) does not open under the job's
    key: the part was altered, cut, or written for another job, chunk or workload. ``record`` is
    the (first) record id concerned, for the caller's one line."""

    def __init__(self, name: str, record: int, count: int = 1) -> None:
        self.record = record
        self.count = count
        with_it = f" (nor the {count - 1} other results sealed with it)" if count > 1 else ""
        super().__init__(
            f"result part {name}: the result of record {record}{with_it} failed authentication under its job's key"
        )


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
    """A part of the older form (``RQPP1``) from (record id, sealed result) entries."""
    out = bytearray(MAGIC)
    for rid, sealed in entries:
        out += _ENTRY.pack(rid, len(sealed))
        out += sealed
    return bytes(out)


def seal_part(workload: Workload | Seals, results: list[tuple[int, bytes]]) -> bytes:
    """Seal plaintext results as a part of the older form (``RQPP1``: ``Workload.seal_packed``
    with the part's entry header): the same bytes as ``encode_part`` of each result sealed. What
    processors before issue 28's W9 round wrote; kept to test that such a part still reads."""
    return MAGIC + workload.seal_packed("result", results, header=_ENTRY)


def _runs(ids: list[int]) -> bytes:
    """``ids`` as a group's runs: (first, count) for each stretch of consecutive ids."""
    if ids and ids[-1] - ids[0] + 1 == len(ids) and ids == list(range(ids[0], ids[-1] + 1)):
        return _COUNT.pack(1) + _RUN.pack(ids[0], len(ids))  # the usual group: one run, no step per id
    runs: list[list[int]] = []
    for rid in ids:
        if runs and runs[-1][0] + runs[-1][1] == rid:
            runs[-1][1] += 1
        else:
            runs.append([rid, 1])
    return _COUNT.pack(len(runs)) + b"".join(_RUN.pack(first, count) for first, count in runs)


def _group_aad(seals: Seals) -> bytes:
    return aad("results", seals.id, seals.scope, "")


def seal_group(seals: Workload | Seals, results: list[tuple[int, bytes]]) -> list[bytes]:
    """``(rid, plaintext)`` results as one group of the ``RQPP2`` form under ``seals``'s key (the
    committing job's scope): one nonce, one join, one AES-GCM call -- returned as pieces (header,
    ciphertext) so a large group is not copied once more to be framed."""
    return _seal_columns(seals, list(map(itemgetter(0), results)), list(map(itemgetter(1), results)))


def _seal_columns(seals: Workload | Seals, ids: list[int], payloads: list[bytes]) -> list[bytes]:
    """``seal_group`` of results given as columns (ids, plaintexts): no Python step per result."""
    s = seals.seals if isinstance(seals, Workload) else seals
    lengths = array("I", map(len, payloads))
    if _SWAP_LENGTHS:
        lengths.byteswap()
    nonce = os.urandom(NONCE_SIZE)
    runs = _runs(ids)
    sealed = s.sealer.aead.encrypt(nonce, b"".join(chain((lengths.tobytes(),), payloads)), _group_aad(s) + runs)
    return [_GROUP_LEN.pack(NONCE_SIZE + len(runs) + len(sealed)) + nonce + runs, sealed]


def _open_group(seals: Seals, name: str, body: memoryview | bytes) -> tuple[list[int], list[bytes]]:
    """The ids and results of one group's body (after its length): ``ResultRefused`` unless it is
    exactly what ``seal_group`` sealed for those ids under this job's key."""
    end = len(body)
    if end < NONCE_SIZE + _COUNT.size:
        raise IntegrityError(f"result part {name} is truncated")
    (k,) = _COUNT.unpack_from(body, NONCE_SIZE)
    stop = NONCE_SIZE + _COUNT.size + k * _RUN.size
    if stop + TAG_SIZE > end:
        raise IntegrityError(f"result part {name} is truncated")
    runs = bytes(body[NONCE_SIZE:stop])
    spans = [_RUN.unpack_from(runs, at) for at in range(_COUNT.size, len(runs), _RUN.size)]
    n = sum(count for _, count in spans)
    try:
        plain = seals.sealer.aead.decrypt(bytes(body[:NONCE_SIZE]), bytes(body[stop:]), _group_aad(seals) + runs)
    except InvalidTag:
        raise ResultRefused(name, spans[0][0] if spans else -1, n) from None
    head = 4 * n
    lengths = array("I")
    if head <= len(plain):
        lengths.frombytes(plain[:head])
        if _SWAP_LENGTHS:
            lengths.byteswap()
    # authenticated, so only a sealer's bug reaches this; still never a shifted result
    if len(lengths) != n or sum(lengths) != len(plain) - head:
        raise IntegrityError(f"result part {name} has a group that does not add up to its {n} results")
    ids: list[int] = []
    for rid, count in spans:
        ids.extend(range(rid, rid + count))
    bounds = list(accumulate(lengths, initial=head))
    return ids, list(map(plain.__getitem__, map(slice, bounds, bounds[1:])))


def open_groups(raw: bytes, name: str, seals: Seals) -> tuple[list[int], list[bytes]]:
    """Every (record id, result) of a whole ``RQPP2`` part, as two lists in the part's order: one
    AES-GCM open per group. ``ResultRefused`` for a group that does not open, ``IntegrityError``
    for a part that is cut or not of this form."""
    if not raw.startswith(MAGIC_GROUPS):
        raise IntegrityError(f"result part {name} is not an rqp result part (bad header): replaced or corrupted")
    view = memoryview(raw)
    pos, end = len(MAGIC_GROUPS), len(raw)
    ids: list[int] = []
    results: list[bytes] = []
    while pos < end:
        if end - pos < _GROUP_LEN.size:
            raise IntegrityError(f"result part {name} is truncated")
        (n,) = _GROUP_LEN.unpack_from(raw, pos)
        pos += _GROUP_LEN.size
        if end - pos < n:
            raise IntegrityError(f"result part {name} is truncated")
        got, values = _open_group(seals, name, view[pos : pos + n])
        ids += got
        results += values
        pos += n
    return ids, results


def _iter_groups(buf: bytes, rest: Iterator[bytes], name: str, seals: Seals) -> Iterator[tuple[int, bytes]]:
    """(rid, result) of an ``RQPP2`` part read in pieces, ``buf`` its first bytes past the magic:
    one group held at a time."""
    pos = 0
    while True:
        while len(buf) - pos >= _GROUP_LEN.size:
            (n,) = _GROUP_LEN.unpack_from(buf, pos)
            if len(buf) - pos - _GROUP_LEN.size < n:
                break
            body = buf[pos + _GROUP_LEN.size : pos + _GROUP_LEN.size + n]
            pos += _GROUP_LEN.size + n
            yield from zip(*_open_group(seals, name, body), strict=True)
        piece = next(rest, None)
        if piece is None:
            break
        buf = buf[pos:] + piece
        pos = 0
    if pos < len(buf):
        raise IntegrityError(f"result part {name} is truncated")


def iter_results(
    chunks: Iterable[bytes], name: str, seals: Seals, wanted: Container[int] | None = None
) -> Iterator[tuple[int, bytes]]:
    """(record id, plaintext result) of a part of either form read in pieces
    (``BlobStore.iter_chunks``), each opened under ``seals`` (the committing job's scope): a
    group of the current form at a time (every group opened, only ``wanted`` ids yielded), or one
    entry of the older form at a time (only the ``wanted`` ones opened, as readers of that form
    always did). ``ResultRefused`` for a result
    that does not open, ``IntegrityError`` for a part that is cut or not a part."""
    pieces = iter(chunks)
    head = b""
    for piece in pieces:
        head += piece
        if len(head) >= len(MAGIC):
            break
    if head.startswith(MAGIC_GROUPS):
        for rid, result in _iter_groups(head[len(MAGIC_GROUPS) :], pieces, name, seals):
            if wanted is None or rid in wanted:
                yield rid, result
        return
    for rid, sealed in iter_part(chain((head,), pieces), name):
        if wanted is not None and rid not in wanted:
            continue
        try:
            yield rid, seals.open_sealed("result", rid, sealed)
        except IntegrityError:
            raise ResultRefused(name, rid) from None


def iter_part(chunks: Iterable[bytes], name: str) -> Iterator[tuple[int, bytes]]:
    """``decode_part`` over a part of the older form (``RQPP1``) read in pieces
    (``BlobStore.iter_chunks``): holds one piece and at most one entry in memory, so a part of
    large results never sits in memory whole. Entries are sliced at an offset (the consumed
    front is dropped once per piece, not per entry)."""
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
    """(record id, sealed result) of a whole part of the older form (``RQPP1``)."""
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
    """One part (``form`` 2: ``RQPP2``; 1: ``RQPP1``, each result sealed as it is added), built as
    results arrive, without holding them all:
    results gather as plaintext up to ``group_bytes`` (one batch past it at most) and are then
    sealed as one group; sealed groups stay in memory up to ``budget`` bytes (the common case: one
    group, one upload, no file), then everything goes to an unnamed temporary file, which the
    kernel removes even when the worker is killed. Close it when done (``with``)."""

    def __init__(
        self,
        seals: Workload | Seals,
        budget: int | None = None,
        spill_dir: str | None = None,
        group_bytes: int | None = None,
        form: int = 2,
    ) -> None:
        self.seals = seals.seals if isinstance(seals, Workload) else seals
        self.budget = PART_MEMORY_BYTES if budget is None else budget
        #: 2: groups (``RQPP2``); 1: one sealed value per result (``RQPP1``), for a scheduler
        #: that reads no newer (``rqp.jobs.ChunkSpec.part_form``)
        self.form = 2 if form >= 2 else 1
        self.group_bytes = (GROUP_BYTES if group_bytes is None else group_bytes) if self.form == 2 else 0
        self.spill_dir = spill_dir
        #: results added to the part so far
        self.entries = 0
        #: the part's sealed size in bytes so far (results still gathering not counted)
        self.size = len(MAGIC_GROUPS)
        self._ids: list[int] = []
        self._values: list[bytes] = []
        self._pending_bytes = 0
        self._mem = bytearray(MAGIC_GROUPS if self.form == 2 else MAGIC)
        self._file: IO[bytes] | None = None

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def add(self, results: list[tuple[int, bytes]]) -> None:
        """Add ``(rid, plaintext)`` results; they are sealed once ``group_bytes`` have gathered."""
        if results:
            self.add_columns(list(map(itemgetter(0), results)), list(map(itemgetter(1), results)))

    def add_columns(self, ids: list[int], values: list[bytes]) -> None:
        """``add`` of results given as columns: record ids, and their plaintexts in the same order."""
        if len(ids) != len(values):
            raise ValueError(f"{len(ids)} record ids for {len(values)} results")
        if not ids:
            return
        self._ids += ids
        self._values += values
        self._pending_bytes += sum(map(len, values))
        self.entries += len(ids)
        if self._pending_bytes >= self.group_bytes:
            self._seal()

    def _seal(self) -> None:
        """Seal the gathered results as one group and keep it (in memory, or in the spill file)."""
        if not self._ids:
            return
        if self.form == 2:
            pieces = _seal_columns(self.seals, self._ids, self._values)
        else:  # each result on its own, as processors before groups wrote them
            pieces = [self.seals.seal_packed("result", zip(self._ids, self._values, strict=True), header=_ENTRY)]
        self._ids, self._values, self._pending_bytes = [], [], 0
        size = sum(map(len, pieces))
        self.size += size
        if self._file is None:
            if len(self._mem) + size <= self.budget:
                for piece in pieces:
                    self._mem += piece
                return
            self._file = tempfile.TemporaryFile(prefix="rqp-part-", dir=self.spill_dir)  # noqa: SIM115 - closed by close()
            self._file.write(self._mem)
            self._mem = bytearray()
        for piece in pieces:
            self._file.write(piece)

    def upload(self, store: BlobStore, name: str) -> None:
        """Store the part as blob ``name``: in one write when it stayed in memory, else streamed."""
        self._seal()
        if self._file is None:
            store.put(name, bytes(self._mem))
            return
        fh = self._file
        fh.flush()
        fh.seek(0)
        store.put_stream(name, iter(lambda: fh.read(UPLOAD_PIECE_BYTES), b""))

    def close(self) -> None:
        self._ids, self._values, self._pending_bytes = [], [], 0
        self._mem = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
