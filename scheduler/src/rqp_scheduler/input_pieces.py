"""The records' input digests (``rqp.results_root.input_digest``), computed once, at enqueue.

The results root needs one input HMAC per record. Reading the data a second time at the end for
them (its SHA-256 against the manifest, AES-GCM, the split into records, then the HMACs) was the
largest part of the root's pass; the enqueue holds every record's bytes already. So it HMACs
them there and stores them in **pieces** of ``PIECE_RECORDS`` in the blob store,
``workloads/W/input-digests/<run>/<first>-<count>.bin`` (the last, shorter one when consolidation
begins); consolidation reads the pieces instead of the data. A piece is only ever read by the run
that wrote it (below), so when it is written does not matter to a restart: a run that ends before
storing what it holds leaves a gap, and the next run reads the data.

Pieces are scratch, never trusted beyond this scheduler's run: each carries an HMAC-SHA256 tag
under a key drawn at random when the run begins and held only in this process's memory (never
the data key: processors hold that, and a digest they could forge would let them change what the
signed root says a record's input was -- more than they can forge today). The tag binds the
workload, the signed manifest, the first record and the count. ``<run>`` names the key (the
first bytes of its SHA-256), so pieces of another run (a scheduler that restarted, a fail-over)
are not looked at. Whenever the pieces of this run do not cover records ``0..total-1`` -- a
restart, a piece that could not be written, a blob writer who deleted or changed one, a ``rqp
retry`` round (no enqueue) -- the root reads the data again as before: the same leaves either way,
only slower. They are deleted once the summary is written.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rqp.errors import RqpError, StorageError
from rqp.merkle import HASH_SIZE
from rqp.results_root import input_digests
from rqp.storage import BlobStore
from rqp.workload import Workload, blob_name

__all__ = ["PIECES_DIR", "PIECE_RECORDS", "InputPieces", "Piece", "PieceRejected"]

log = logging.getLogger("rqp.scheduler")

#: where the pieces go, under the workload's blobs
PIECES_DIR = "input-digests/"
#: what a piece's tag is over, before the workload, manifest, range and digests
PIECE_DOMAIN = b"rqp-input-piece/1|"
#: records per stored piece (2 MiB of digests): few blob requests per workload -- on Azure each
#: costs the SDK's pipeline -- and a bounded buffer
PIECE_RECORDS = 1 << 16
#: hex digits of the run key's SHA-256 that name a run's pieces
_RUN_NAME_HEX = 16
_NAME_RE = re.compile(r"/input-digests/([0-9a-f]{16})/(\d+)-(\d+)\.bin$")


class PieceRejected(RqpError):
    """A piece of this run is missing, cut short or not tagged by this run: read the data again."""


@dataclass(frozen=True)
class Piece:
    """One stored piece: ``count`` digests from record ``first`` on, used from ``skip`` on."""

    name: str
    first: int
    count: int
    skip: int = 0


class InputPieces:
    """Computes, stores and reads back one run's input-digest pieces (see the module's docstring)."""

    def __init__(self, store: BlobStore, workload: Workload) -> None:
        self.store = store
        self.workload = workload
        self._key = os.urandom(32)
        self._run = hashlib.sha256(self._key).hexdigest()[:_RUN_NAME_HEX]
        self._digests = input_digests(workload)
        self._bound = b"%b%b|%b|" % (PIECE_DOMAIN, workload.id.encode(), workload.manifest.content_digest().encode())
        #: digests computed but not yet stored (fewer than ``PIECE_RECORDS``), from ``_held_first``
        self._held = bytearray()
        self._held_first = 0

    def digests(self, first: int, payloads: Iterable[bytes]) -> bytes:
        """The input digests of records ``first, first+1, ...`` with these bytes, concatenated."""
        return self._digests(first, payloads)

    def add(self, first: int, macs: bytes) -> tuple[int, bytes] | None:
        """Keep the digests of records ``first..`` with those before them; returns a piece to
        ``write`` (first record, digests) once ``PIECE_RECORDS`` are held, or when ``first`` does
        not follow what is held (the enqueue went back to an earlier cursor: what is held is
        still right for its records, and goes out as it is)."""
        out = None
        if self._held and first != self._held_first + len(self._held) // HASH_SIZE:
            out = self._take()
        if not self._held:
            self._held_first = first
        self._held += macs
        if len(self._held) >= PIECE_RECORDS * HASH_SIZE:
            if out is not None:
                self.write(*out)  # rare: a cursor that went back, and a full piece at once
            out = self._take()
        return out

    def _take(self) -> tuple[int, bytes]:
        piece = (self._held_first, bytes(self._held))
        self._held.clear()
        return piece

    def flush(self) -> None:
        """Store what is held (the enqueue's last records): before the root reads the pieces."""
        if self._held:
            self.write(*self._take())

    def _name(self, first: int, count: int) -> str:
        return blob_name(self.workload.id, f"{PIECES_DIR}{self._run}/{first}-{count}.bin")

    def _tag(self, first: int, count: int, macs: bytes) -> bytes:
        return hmac.digest(self._key, b"%b%d-%d|%b" % (self._bound, first, count, macs), "sha256")

    def write(self, first: int, macs: bytes) -> None:
        """Store the digests of records ``first..`` (tagged); a store that refuses is only logged:
        the root then reads the data again."""
        count = len(macs) // HASH_SIZE
        if not count:
            return
        try:
            self.store.put(self._name(first, count), macs + self._tag(first, count, macs))
        except StorageError as exc:
            log.warning(
                "workload %s: input digests of records %d-%d not stored (%s); the results root reads the data again",
                self.workload.id, first, first + count - 1, exc,
            )  # fmt: skip

    def plan(self, total: int) -> list[Piece] | None:
        """This run's pieces that cover records ``0..total-1`` in order (what is held stored
        first), or None when they do not."""
        self.flush()
        found = []
        try:
            for name in self.store.list(blob_name(self.workload.id, f"{PIECES_DIR}{self._run}/")):
                m = _NAME_RE.search(name)
                if m is not None and m.group(1) == self._run:
                    found.append(Piece(name, int(m.group(2)), int(m.group(3))))
        except StorageError:
            return None
        found.sort(key=lambda p: (p.first, -p.count))
        out: list[Piece] = []
        n = 0
        for p in found:
            if n >= total:
                break
            if p.first > n:
                return None  # a gap: written by another run, or not at all
            if p.first + p.count <= n:
                continue
            out.append(Piece(p.name, p.first, p.count, n - p.first))
            n = p.first + p.count
        return out if n >= total else None

    def read(self, plan: list[Piece], total: int) -> Iterator[bytes]:
        """The digests of records ``0..total-1``, piece by piece, each piece's tag checked;
        ``PieceRejected`` at the first that is not as this run wrote it."""
        for p in plan:
            try:
                blob = self.store.get(p.name)
            except StorageError as exc:
                raise PieceRejected(f"input digests {p.name} unreadable: {exc}") from None
            macs, tag = blob[:-HASH_SIZE], blob[-HASH_SIZE:]
            if len(macs) != p.count * HASH_SIZE or not hmac.compare_digest(tag, self._tag(p.first, p.count, macs)):
                raise PieceRejected(f"input digests {p.name} are not as this run wrote them")
            end = min(p.count, total - p.first)
            yield macs[p.skip * HASH_SIZE : end * HASH_SIZE]

    def delete_all(self) -> None:
        """Delete every run's pieces of the workload (scratch once the summary is written)."""
        try:
            for name in list(self.store.list(blob_name(self.workload.id, PIECES_DIR))):
                self.store.delete(name)
        except StorageError as exc:
            log.warning("workload %s: input digest pieces not deleted (%s)", self.workload.id, exc)
