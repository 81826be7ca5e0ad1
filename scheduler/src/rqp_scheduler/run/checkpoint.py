"""Checkpoints of a workload's authenticated progress in the blob store, and the resume from them
when Redis was lost entirely (both copies: a fresh, empty Redis).

What a checkpoint holds is what consolidation trusts, never Redis's plain state: the sealed chunk
notes of committed data chunks (each opened and checked under the workload's key before it is
written), the retry-chunk notes that did their records not done, the result part each of those
commits named, and the sealed "failed" status records of the records in between that did not
succeed. It covers a *prefix* of the records: ``0..end-1``, every one of them done in exactly one
note or failed for good. A chunk committed out of order beyond the first gap waits for the gap.

Checkpoints are written every ``interval`` seconds (``RQP_CHECKPOINT_SECONDS``) as *segments*,
``workloads/W/checkpoints/<seq>.enc``, each holding only what the prefix gained since the last one
(so a checkpoint costs what progress was made, not the workload's size), sealed under the data key
with AAD binding the workload and the segment's number, and chained: each names the SHA-256 of the
one before it. A blob writer can delete segments (the resume starts from an earlier point and
re-runs more) but cannot forge, reorder or splice them in from another run.

Resume (``restore``): a workload Redis knows nothing of (none of its keys), with segments in the
blob store, begins with the notes, part references, done bits and failed statuses they hold
written back into Redis, and its sealed head at the checkpoint's end -- so the enqueue reads on
from there: records in the checkpoint are not run again, everything after it is. Chunk and retry-chunk numbers resume
``RESUME_CHUNK_GAP`` past what the lost Redis may have queued, so a processor that finishes a chunk
of the lost run after the resume commits under a job id the new run never queues (its commit
finds no pending job and counts for nothing), and a part it writes is never one a new note names.
Consolidation reads only the part each note names: parts written after the checkpoint but not in
it are orphans, never read, deleted at the end with the rest.

Only the first round (not a ``rqp retry --failed`` round) is checkpointed. A retry round starts
from the sealed summary of the round before it, so what it needs to resume after Redis was lost
is only which round was running: ``mark_round`` seals that into ``workloads/W/round.enc`` as the
round begins, and a workload Redis knows nothing of whose summary is of the round before the
marked one runs that round again from the summary (``rqp_scheduler.run.workload_run``). A summary
of the marked round (or a marker that is missing or older) means the workload ended: never
resumed, whatever checkpoint segments were put back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field

from redis.typing import EncodableT, FieldT

from rqp.errors import BlobNotFoundError, IntegrityError, StorageUnavailableError
from rqp.ledger import ChunkKind, Counters, Head, Meta, PartRef, chunk_name, note_field, parse_note_field
from rqp.status import FAILED, ChunkNote, StatusRecord
from rqp.storage import BlobStore
from rqp.workload import Workload, blob_name

from .context import RunContext

__all__ = [
    "CHECKPOINT_DIR",
    "RESUME_CHUNK_GAP",
    "ROUND_BLOB",
    "Checkpointer",
    "Segment",
    "mark_round",
    "marked_round",
    "segment_blob",
]

log = logging.getLogger("rqp.scheduler")

#: where a workload's checkpoint segments live, under ``workloads/<id>/``
CHECKPOINT_DIR = "checkpoints/"
#: chunk (and retry-chunk) numbers a resumed run skips past what the lost Redis had queued
RESUME_CHUNK_GAP = 4096
#: the sealed marker of the round a workload runs (``mark_round``), under ``workloads/<id>/``
ROUND_BLOB = "round.enc"
#: a segment's plaintext format
SEGMENT_FORMAT = "rqp-checkpoint/1"
_SEGMENT_RE = re.compile(r"(\d{8})\.enc$")
#: chunks (of each kind) asked about per checkpoint, at most
MAX_CANDIDATES = 10_000
#: failed statuses read per round trip while extending the prefix
_STATUS_BATCH = 1000


def segment_blob(workload_id: str, seq: int) -> str:
    return blob_name(workload_id, f"{CHECKPOINT_DIR}{seq:08d}.enc")


def mark_round(store: BlobStore, workload: Workload, round_: int) -> None:
    """Seal "round ``round_`` runs" into the blob store, before Redis is told: what a resume after
    Redis was lost entirely goes by (Redis's sealed head went with it)."""
    body = json.dumps({"round": round_}, separators=(",", ":")).encode()
    store.put(blob_name(workload.id, ROUND_BLOB), workload.seal("round", "", body))


def marked_round(store: BlobStore, workload: Workload) -> int | None:
    """The round ``mark_round`` sealed last; None when there is no marker or it does not open
    under the workload's key (a blob writer can delete it -- the retry round lost with Redis is
    then taken as ended -- but not forge one)."""
    try:
        raw = workload.open_sealed("round", "", store.get(blob_name(workload.id, ROUND_BLOB)))
        return int(json.loads(raw)["round"])
    except (BlobNotFoundError, IntegrityError, ValueError, KeyError, TypeError):
        return None


@dataclass
class Segment:
    """What the prefix gained between two checkpoints: records ``start..end-1``."""

    seq: int
    #: SHA-256 (hex) of the previous segment's plaintext ("" for the first)
    prev: str
    start: int
    end: int
    #: data chunks the run had queued when it was written (the lost Redis's head, authenticated)
    chunks: int
    #: retry chunks it had numbered (plain in Redis: only ever used to skip past)
    retry_seq: int
    #: (note field, sealed note, part reference) of each chunk in it
    notes: list[tuple[str, bytes, str]] = field(default_factory=list)
    #: (record id, sealed "failed" status) of its records failed for good
    failed: list[tuple[int, bytes]] = field(default_factory=list)

    def to_json(self) -> bytes:
        b64 = base64.b64encode
        return json.dumps(
            {"format": SEGMENT_FORMAT, "seq": self.seq, "prev": self.prev, "start": self.start, "end": self.end,
             "chunks": self.chunks, "retry_seq": self.retry_seq,
             "notes": [[f, b64(s).decode(), p] for f, s, p in self.notes],
             "failed": [[rid, b64(s).decode()] for rid, s in self.failed]},
            separators=(",", ":"),
        ).encode()  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes) -> Segment:
        d = json.loads(raw)
        if d.get("format") != SEGMENT_FORMAT:
            raise ValueError("unknown checkpoint format")
        b64 = base64.b64decode
        return cls(
            int(d["seq"]), str(d["prev"]), int(d["start"]), int(d["end"]), int(d["chunks"]), int(d["retry_seq"]),
            [(str(f), b64(s), str(p)) for f, s, p in d["notes"]], [(int(rid), b64(s)) for rid, s in d["failed"]],
        )  # fmt: skip


@dataclass
class _Seen:
    """A committed chunk's note as the checkpointer opened it."""

    field: str
    sealed: bytes
    note: ChunkNote
    #: the part reference its commit wrote
    ref: str


def _done_spans(note: ChunkNote) -> list[tuple[int, int]]:
    """The note's done records as ranges (first, last)."""
    skip = set(note.not_done)
    out: list[tuple[int, int]] = []
    for first, count, _attempt in note.runs:
        start = None
        for rid in range(first, first + count):
            if rid in skip:
                if start is not None:
                    out.append((start, rid - 1))
                start = None
            elif start is None:
                start = rid
        if start is not None:
            out.append((start, first + count - 1))
    return out


def _holes(first: int, last: int, spans: list[tuple[int, int]]) -> list[int]:
    """The records of ``first..last`` outside ``spans`` (sorted, disjoint ranges)."""
    out: list[int] = []
    at = first
    for a, b in sorted(spans):
        out.extend(range(at, min(a, last + 1)))
        at = max(at, b + 1)
    out.extend(range(at, last + 1))
    return out


def _span_of(note: ChunkNote) -> tuple[int, int]:
    """The first and last record a data chunk's runs cover."""
    return min(f for f, _, _ in note.runs), max(f + c - 1 for f, c, _ in note.runs)


class Checkpointer:
    """Writes one workload's checkpoint segments as it runs; restores them into an empty Redis."""

    def __init__(self, ctx: RunContext, interval: float | None = None) -> None:
        self.ctx = ctx
        self.interval = ctx.settings.checkpoint_seconds if interval is None else interval
        #: records 0..cursor-1 are in the checkpoint
        self.cursor = 0
        self.seq = 0
        self.prev = ""
        #: chunks whose note was collected (or that committed with none)
        self._seen: set[str] = set()
        #: the first data chunk that may not be in the checkpoint yet
        self._next_chunk = 0
        #: retry chunks numbered up to here were looked for; those of them not committed yet
        self._retry_upto = -1
        self._retry_open: set[str] = set()
        #: data notes beyond the cursor, by their first record
        self._data: dict[int, _Seen] = {}
        #: retry notes not yet in the checkpoint, by field
        self._retry: dict[str, _Seen] = {}
        #: what writing checkpoints cost: segments, seconds, bytes (the figures the README gives)
        self.written = 0
        self.seconds = 0.0
        self.bytes = 0
        #: the digest of the last segment ``load`` accepted
        self._chain_prev = ""

    # ------------------------------------------------------------------ writing
    def due(self) -> bool:
        return self.interval > 0 and self.ctx.head.round == 1 and not self.ctx.head.closed

    def write(self) -> bool:
        """Bring the checkpoint up to date; True when a segment was written. A blob store that is
        down only delays it (the next interval tries again)."""
        if not self.due():
            return False
        began = time.perf_counter()
        self._collect()
        segment = self._extend()
        if segment is None:
            return False
        raw = segment.to_json()
        sealed = self.ctx.workload.seal("checkpoint", segment.seq, raw)
        try:
            self.ctx.store.put(segment_blob(self.ctx.id, segment.seq), sealed)
        except StorageUnavailableError as exc:
            log.warning("workload %s: checkpoint not written (%s); will retry", self.ctx.id, exc)
            return False
        self._accept(segment, raw)
        self.written += 1
        self.bytes += len(sealed)
        self.seconds += time.perf_counter() - began
        log.debug("workload %s: checkpoint %d covers %d records", self.ctx.id, segment.seq, self.cursor)
        return True

    def _collect(self) -> None:
        """The notes committed since the last look, opened under the workload's key. Only chunks
        that may have committed since are asked about -- data chunks queued past the last one in
        the checkpoint, retry chunks numbered since -- through the part reference their commit
        wrote (which names the note's field): a checkpoint costs the window, not the workload."""
        ctx = self.ctx
        k = ctx.ledger.k
        candidates = [
            name
            for i in range(self._next_chunk, ctx.head.chunks)
            if (name := chunk_name(ChunkKind.DATA, i)) not in self._seen
        ][:MAX_CANDIDATES]
        try:
            numbered = int(ctx.r.hget(k.meta, Meta.RETRY_SEQ) or 0)
        except ValueError:
            numbered = self._retry_upto  # junk a Redis writer left: no new retry chunk this time
        if numbered > self._retry_upto:
            fresh = range(max(self._retry_upto + 1, numbered - MAX_CANDIDATES + 1), numbered + 1)
            self._retry_open.update(chunk_name(ChunkKind.RETRY, i) for i in fresh)
            self._retry_upto = numbered
        while len(self._retry_open) > MAX_CANDIDATES:  # the oldest, retired without a commit
            self._retry_open.remove(min(self._retry_open))
        candidates += sorted(self._retry_open)
        if not candidates:
            return
        committed: list[tuple[str, str, str]] = []  # chunk, note field, part reference
        for chunk, raw_ref in zip(candidates, ctx.r.hmget(k.parts, candidates), strict=True):
            if raw_ref is None:
                continue  # not committed (yet)
            text = raw_ref.decode(errors="replace") if isinstance(raw_ref, bytes) else str(raw_ref)
            try:
                ref = PartRef.parse(text)
            except ValueError:
                continue  # junk: looked at again next time, never carried
            committed.append((chunk, note_field(chunk, ref.first, ref.last), text))
        if not committed:
            return
        sealed_notes = ctx.r.hmget(k.notes, [f for _, f, _ in committed])
        for (chunk, name, ref_text), raw_sealed in zip(committed, sealed_notes, strict=True):
            if raw_sealed is None:
                self._seen.add(chunk)  # committed with no record done: no note, nothing to carry
                self._retry_open.discard(chunk)
                continue
            sealed = bytes(raw_sealed) if isinstance(raw_sealed, bytes) else str(raw_sealed).encode()
            try:
                note = ChunkNote.open(ctx.workload, chunk, sealed)
            except (IntegrityError, ValueError):
                continue  # consolidation names it; a checkpoint never carries it
            if note.chunk != chunk or note.round != ctx.head.round or not note.runs:
                continue
            self._seen.add(chunk)
            self._retry_open.discard(chunk)
            seen = _Seen(name, sealed, note, ref_text)
            if ChunkKind.of(chunk) is ChunkKind.RETRY:
                self._retry[name] = seen
            elif _span_of(note)[0] >= self.cursor:
                self._data[_span_of(note)[0]] = seen

    def _extend(self) -> Segment | None:
        """The segment that extends the prefix as far as the committed notes allow, or None."""
        ctx = self.ctx
        limit: int | None = None
        while True:
            end, data, used_retry, failed = self._greedy(limit)
            if not data:
                return None
            # a retry note goes in only with every record it did inside the prefix: cut back until so
            if all(b < end for s in used_retry.values() for _, b in _done_spans(s.note)):
                break
            limit = _span_of(data[-1].note)[0]
        notes = [(s.field, s.sealed, s.ref) for s in (*data, *used_retry.values())]
        retry_seq = ctx.r.hget(ctx.ledger.k.meta, Meta.RETRY_SEQ)
        try:
            seq_no = max(0, int(retry_seq or 0))
        except ValueError:
            seq_no = 0  # junk a Redis writer left: the resume's gap is counted from 0
        return Segment(self.seq + 1, self.prev, self.cursor, end, ctx.head.chunks, seq_no, notes, sorted(failed))

    def _greedy(self, limit: int | None) -> tuple[int, list[_Seen], dict[str, _Seen], list[tuple[int, bytes]]]:
        """The prefix from the cursor through the data notes in record order (those starting
        before ``limit``), until a record neither done nor failed for good: (its end, the data
        notes, the retry notes that did records of theirs, the failed statuses)."""
        retry_by_rid = {rid: s for s in self._retry.values() for a, b in _done_spans(s.note) for rid in range(a, b + 1)}
        end = self.cursor
        data: list[_Seen] = []
        used_retry: dict[str, _Seen] = {}
        failed: list[tuple[int, bytes]] = []
        for first in sorted(self._data):
            if limit is not None and first >= limit:
                break
            seen = self._data[first]
            lo, hi = _span_of(seen.note)
            if lo < end:
                continue  # overlaps what is in already: never claim a record twice
            # records between the prefix and this chunk, and those of its range it did not do (not
            # done, malformed, or failed for good when a reclaim queued the rest again): each
            # failed for good, or done by a retry chunk
            between = _holes(end, hi, _done_spans(seen.note))
            statuses = self._failed_statuses([rid for rid in between if rid not in retry_by_rid])
            if statuses is None:
                break
            used_retry |= {retry_by_rid[r].field: retry_by_rid[r] for r in between if r in retry_by_rid}
            data.append(seen)
            failed += statuses
            end = hi + 1
        return end, data, used_retry, failed

    def _failed_statuses(self, rids: list[int]) -> list[tuple[int, bytes]] | None:
        """The sealed status of each of ``rids`` when every one says failed (for good), else None."""
        out: list[tuple[int, bytes]] = []
        ledger, w = self.ctx.ledger, self.ctx.workload
        for i in range(0, len(rids), _STATUS_BATCH):
            batch = rids[i : i + _STATUS_BATCH]
            for rid, sealed in zip(batch, ledger.statuses(batch), strict=True):
                if sealed is None:
                    return None
                try:
                    if StatusRecord.open(w, rid, sealed).state != FAILED:
                        return None
                except IntegrityError:
                    return None
                out.append((rid, sealed))
        return out

    def _accept(self, segment: Segment, raw: bytes) -> None:
        """``segment`` is in the blob store: the prefix moves to its end."""
        self.seq = segment.seq
        self.prev = hashlib.sha256(raw).hexdigest()
        self.cursor = segment.end
        for first in [f for f in self._data if f < segment.end]:
            del self._data[first]
        for name, _, _ in segment.notes:
            self._retry.pop(name, None)
            chunk = parse_note_field(name)[0]
            if ChunkKind.of(chunk) is ChunkKind.DATA:
                self._next_chunk = max(self._next_chunk, int(chunk[1:]) + 1)

    # ------------------------------------------------------------------ reading and resuming
    def load(self) -> list[Segment]:
        """The chain of segments that open and follow each other, from the first; the rest
        (after a missing, unopenable or out-of-chain one) is ignored."""
        ctx = self.ctx
        names = {
            int(m.group(1)): n
            for n in ctx.store.list(blob_name(ctx.id, CHECKPOINT_DIR))
            if (m := _SEGMENT_RE.search(n)) is not None
        }
        chain: list[Segment] = []
        prev, cursor = "", 0
        for seq in range(1, len(names) + 1):
            if seq not in names:
                break
            try:
                raw = ctx.workload.open_sealed("checkpoint", seq, ctx.store.get(names[seq]))
                segment = Segment.from_json(raw)
            except (IntegrityError, BlobNotFoundError, ValueError, KeyError, TypeError) as exc:
                log.warning(
                    "workload %s: checkpoint %d does not open (%s); resuming from the one before", ctx.id, seq, exc
                )
                break
            if segment.seq != seq or segment.prev != prev or segment.start != cursor or segment.end <= cursor:
                log.warning("workload %s: checkpoint %d is not the next of the chain; resuming before it", ctx.id, seq)
                break
            chain.append(segment)
            prev, cursor = hashlib.sha256(raw).hexdigest(), segment.end
        self._chain_prev = prev
        return chain

    def restore(self) -> int:
        """A workload just begun in an empty Redis: its checkpoint written back (see the module's
        docstring). Returns how many records it covers (0: none, the run starts from scratch)."""
        ctx = self.ctx
        k = ctx.ledger.k
        if ctx.r.exists(k.notes, k.parts, k.st, k.done, k.failed):
            # some of its state is there (only its meta went): the enqueue skips the chunks Redis
            # has, as before; a checkpoint written on top would claim their records twice
            return 0
        chain = self.load()
        if not chain:
            return 0
        last = chain[-1]
        end = last.end
        try:
            notes, parts, statuses, done, failed_bits, done_count = self._written_back(chain, end)
        except (IntegrityError, ValueError) as exc:
            # what this scheduler sealed does not add up: starting over is always exact
            log.warning("workload %s: its checkpoint does not add up (%s); starting from the first record", ctx.id, exc)
            return 0
        head = Head(end, max(s.chunks for s in chain) + RESUME_CHUNK_GAP)
        pipe = ctx.r.pipeline(transaction=True)
        ctx.ledger.advance(pipe, head, head.seal(ctx.workload))
        retry_seq = max(s.retry_seq for s in chain) + RESUME_CHUNK_GAP
        pipe.hset(k.meta, Meta.RETRY_SEQ, retry_seq)
        pipe.hset(k.notes, mapping=notes)
        pipe.hset(k.parts, mapping=parts)
        if statuses:
            pipe.hset(k.st, mapping=statuses)
        pipe.set(k.done, bytes(done))
        pipe.set(k.failed, bytes(failed_bits))
        pipe.hset(k.n, mapping={Counters.DONE: done_count, Counters.FAILED: len(statuses)})
        pipe.execute()
        self.seq, self.cursor = last.seq, end
        self.prev = self._chain_prev
        self._next_chunk, self._retry_upto = head.chunks, retry_seq
        self._discard_after(last.seq)
        log.info(
            "workload %s: Redis did not know it; resumed from checkpoint %d: %d records (%d done, %d failed) not run again",
            ctx.id, last.seq, end, done_count, len(statuses),
        )  # fmt: skip
        return end

    def _written_back(
        self, chain: list[Segment], end: int
    ) -> tuple[dict[FieldT, EncodableT], dict[FieldT, EncodableT], dict[FieldT, EncodableT], bytearray, bytearray, int]:
        """What ``chain`` writes back into Redis -- notes, part references, failed statuses by
        field, the done and failed bitmaps, the done count -- each note and status opened again,
        every record of ``0..end-1`` claimed at most once."""
        w = self.ctx.workload
        done = bytearray((end + 7) // 8)
        failed_bits = bytearray((end + 7) // 8)
        done_count = 0
        notes: dict[FieldT, EncodableT] = {}
        parts: dict[FieldT, EncodableT] = {}
        statuses: dict[FieldT, EncodableT] = {}

        def claim(bits: bytearray, rid: int) -> None:
            if not 0 <= rid < end or (done[rid >> 3] | failed_bits[rid >> 3]) & (0x80 >> (rid & 7)):
                raise IntegrityError(f"record {rid} is claimed twice or lies past the checkpoint's end")
            bits[rid >> 3] |= 0x80 >> (rid & 7)

        for segment in chain:
            for name, sealed, ref in segment.notes:
                chunk = parse_note_field(name)[0]
                note = ChunkNote.open(w, chunk, sealed)  # sealed by the chunk's worker: checked again
                PartRef.parse(ref)
                notes[name], parts[chunk] = sealed, ref
                for a, b in _done_spans(note):
                    for rid in range(a, b + 1):
                        claim(done, rid)
                    done_count += b - a + 1
            for rid, sealed in segment.failed:
                if StatusRecord.open(w, rid, sealed).state != FAILED:
                    raise IntegrityError(f"the status carried for record {rid} does not say failed")
                claim(failed_bits, rid)
                statuses[str(rid)] = sealed
        return notes, parts, statuses, done, failed_bits, done_count

    def _discard_after(self, seq: int) -> None:
        """Segments past the chain's end (unopenable, or of a lost run): never read again."""
        for name in list(self.ctx.store.list(blob_name(self.ctx.id, CHECKPOINT_DIR))):
            m = _SEGMENT_RE.search(name)
            if m is not None and int(m.group(1)) > seq:
                self.ctx.store.delete(name)

    def discard(self) -> None:
        """The workload ended (its results and summary written): its checkpoints go (a blob store
        that is down leaves them: a later resume finds the summary's workload ended in Redis)."""
        if self.written:
            log.info(
                "workload %s: %d checkpoints written (%.1f kB, %.2f s in all); deleted now it has ended",
                self.ctx.id, self.written, self.bytes / 1e3, self.seconds,
            )  # fmt: skip
        try:
            self._discard_after(0)
        except StorageUnavailableError as exc:
            log.warning("workload %s: checkpoints not deleted (%s)", self.ctx.id, exc)
