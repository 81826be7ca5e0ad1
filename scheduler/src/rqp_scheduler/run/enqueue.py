"""Enqueueing: records stream out of the decrypted data into chunks, kept ``window`` chunks
ahead of the processors (so Redis holds only the in-flight window, and a data file larger than
memory works).

Each transaction queues several chunks: per chunk its records (one value, sealed under the
chunk's own key), a sealed spec and an RQ job; failed statuses for malformed records; and the
sealed head (the cursor), so a restart neither skips nor duplicates a record. The records' input
digests for the results root are computed on the way (``rqp_scheduler.input_pieces``: the data
is not read again at the end). While one
transaction is on its way to Redis (on the writer thread) the next batch is already being read
and sealed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from operator import itemgetter

from redis.client import Pipeline
from rq import Worker

from rqp import metrics_http as metrics
from rqp.chunk_records import seal_records
from rqp.config import Settings
from rqp.jobs import ChunkSpec
from rqp.ledger import ChunkKind, Head, Priority, chunk_name, outbox_add
from rqp.messages import pack_messages
from rqp.records import record_key
from rqp.status import FAILED, StatusRecord

from ..consolidate import StateError
from .context import RunContext
from .jobs import chunk_spec, queue_specs
from .records import Batch, RecordStream

__all__ = ["ENQUEUE_BATCH_RECORDS", "WALL_SHARE", "Enqueuer", "chunk_size_for", "record_key", "sizing_seconds"]

log = logging.getLogger("rqp.scheduler")

#: records per enqueue transaction: several chunks share one MULTI and one cursor check
ENQUEUE_BATCH_RECORDS = 4096
#: a parsed record's payload (``Batch`` items are (payload, why it cannot be queued))
_PAYLOAD = itemgetter(0)
#: how often the number of workers (which sizes the window and the chunks) is looked up
WORKERS_CHECK_SECONDS = 5.0
#: the smallest window, and the chunks in flight per worker above it
MIN_WINDOW = 16
WINDOW_PER_WORKER = 4
#: chunks in flight per worker before any chunk has been measured (adaptive sizing): the first
#: chunks are queued at ``RQP_CHUNK_SIZE`` blind, so only enough of them to keep every worker
#: busy until the first commit gives the records' time -- the rest of the window is then sized
#: from it. A whole first window (16 chunks of 256) was 20 % of a 20,000-record workload of 1 ms
#: per record in 37 % of its chunks, each paying a chunk's fixed cost (issue 28)
FIRST_WINDOW_PER_WORKER = 3
#: while the first window waits for its measurement the loop steps every ``WAIT_ENQUEUING``
#: (the rest is sized as soon as a chunk commits), but only this long: a slow script's first
#: chunk (256 records of 1 s each) then waits as a full window does, not 50 steps a second
FIRST_WINDOW_EAGER_SECONDS = 2.0


#: near a workload's end a chunk holds at most the records left / (this x workers): the last
#: chunks shrink, so the workers finish together instead of one idling through the last big one
TAIL_SHARES = 2
#: ... but never less script time than this, so a tail chunk's fixed cost (its RQ job, START and
#: COMMIT: a few ms of CPU) stays small beside its records
TAIL_CHUNK_SECONDS = 0.05


#: a chunk is sized by its script's CPU, but a record counts at least its wall time / this: an
#: I/O-bound script (CPU far below wall) then gets chunks of at most this many times
#: ``RQP_CHUNK_TARGET_SECONDS`` of wall, not thousands of records that each wait on the network
WALL_SHARE = 4.0


def sizing_seconds(wall: float, cpu: float | None) -> float:
    """The seconds per record that chunks are sized by: ``max(cpu, wall / WALL_SHARE)``, or the
    wall time when the script's CPU was not measured (``None``: no chunk reported it -- an older
    processor, an in-process host, /proc unreadable).

    Why CPU: a chunk's fixed cost (its RQ job, START, COMMIT, part upload, status messages: a
    few ms of CPU in the worker, Redis and the scheduler) is paid in CPU, so a chunk should hold
    ``RQP_CHUNK_TARGET_SECONDS`` of the script's CPU to keep that cost a small share. The wall
    time of a CPU-bound record is stretched by whatever else runs on the cores (a 1 ms record
    took ~1.75 ms of wall with two processors and their scheduler on 2 cores), which sized
    chunks at ~570 records instead of ~1,000 and spread the fixed cost over fewer records.
    Why the wall floor: a script that waits (I/O) has CPU far below its wall time; sized by CPU
    alone its chunks would hold hours. ``WALL_SHARE`` = 4 keeps a CPU-bound script sized by its
    CPU while other processes stretch its wall up to 4x (the bench measured 1.75x at load 2-4 and
    3-5x at load 9 on 2 cores), and gives an I/O-bound one chunks of at most 4 s of wall at the
    default 1 s target: well inside the lease (renewed while a chunk runs anyway), a lost worker
    re-running at most that, and the tail rule still shrinking the last chunks."""
    if cpu is None:
        return wall
    return max(cpu, wall / WALL_SHARE)


def chunk_size_for(per_record: float, settings: Settings, workers: int, estimate: float | None, enqueued: int) -> int:
    """Records per chunk (the chunk-size policy): about ``chunk_target_seconds`` of measured work
    (``per_record`` seconds each), at most a quarter of the workload per worker in all (every
    worker shares it), and in the tail at most the records left (``estimate`` - ``enqueued``)
    / (``TAIL_SHARES`` x ``workers``) but not under ``TAIL_CHUNK_SECONDS`` of work -- within
    ``chunk_min``..``chunk_max``."""
    if per_record <= 0:
        return settings.chunk_max
    ideal = settings.chunk_target_seconds / per_record
    if estimate:
        ideal = min(ideal, estimate / (4 * workers))
        left = max(0.0, estimate - enqueued)
        ideal = min(ideal, max(left / (TAIL_SHARES * workers), TAIL_CHUNK_SECONDS / per_record))
    return int(min(settings.chunk_max, max(settings.chunk_min, ideal)))


class Enqueuer:
    """Fills the window from ``stream``; sends its transactions through ``writer``."""

    def __init__(self, ctx: RunContext, stream: RecordStream, writer: ThreadPoolExecutor) -> None:
        self.ctx = ctx
        self.stream = stream
        self.writer = writer
        self.chunk_size = ctx.settings.chunk_size
        self.workers_seen = 0
        self._workers_checked = 0.0
        self._bytes_enqueued = 0
        self._records_enqueued = 0
        #: seconds of work per record the workers last reported (0: none measured yet)
        self.per_record = 0.0
        #: the last ``fill_window`` found (or left) the window full: nothing to queue until a
        #: chunk ends, so the run may step less often (``WorkloadRun.wait_hint``)
        self.window_full = False
        #: the window is held to ``FIRST_WINDOW_PER_WORKER`` chunks per worker until a chunk has
        #: been measured (``_window``)
        self.first_window = False
        #: a chunk of this workload has committed (its records' time is known)
        self.measured = False
        #: when the first window was first held back (monotonic; 0: not yet)
        self._held_since = 0.0

    def fill_window(self) -> None:
        """Queue chunks until ``window`` are in flight (at most one write in flight; every write
        is waited for before this returns, so the rest of a step always sees Redis as the
        enqueue left it)."""
        ctx, stream = self.ctx, self.stream
        if stream.exhausted or stream.records is None:
            return
        in_flight = ctx.ledger.in_flight()
        window = self._window()
        # held back for a first measurement: not "full" for the loop's pace (``step_wait``) at
        # first, so it looks again within ``WAIT_ENQUEUING`` and sizes the rest as soon as a chunk
        # commits (``_eager``)
        self.window_full = in_flight >= window and not self._eager()
        if self.window_full:
            return
        if not self.first_window:  # (``_window`` has just looked)
            self._adapt_chunk_size()
        budget = window - in_flight
        writing: Future[list[object]] | None = None
        try:
            while budget > 0 and not stream.exhausted:
                # a workload's first transaction: one chunk per worker, so they start while the rest is sealed
                limit = self.chunk_size * max(1, self.workers_seen) if not ctx.head.chunks else ENQUEUE_BATCH_RECORDS
                chunks = stream.batches(budget, self.chunk_size, limit)
                budget -= max(1, len(chunks))
                known = ctx.ledger.chunks_known(
                    [chunk_name(ChunkKind.DATA, ctx.head.chunks + i) for i in range(len(chunks))]
                )
                pipe, head = self._prepare(chunks, known)
                first = ctx.head.enqueued
                macs = ctx.inputs.digests(first, map(_PAYLOAD, chain.from_iterable(chunks)))  # C, no frame per record
                piece = ctx.inputs.add(first, macs)
                if writing is not None:
                    last, writing = writing, None
                    last.result()
                if not self.cursor_matches():
                    if piece is not None:  # still right for its records: the rollback reads them again
                        ctx.inputs.write(*piece)
                    return
                writing = self.writer.submit(self._send, pipe, piece)
                self._records_enqueued += head.enqueued - ctx.head.enqueued
                metrics.RECORDS_ENQUEUED.labels(ctx.id).inc(head.enqueued - ctx.head.enqueued)
                ctx.head = head
            self.window_full = budget <= 0 and not self._eager()
        finally:
            if writing is not None:
                writing.result()

    def _send(self, pipe: Pipeline, piece: tuple[int, bytes] | None) -> list[object]:
        """On the writer thread: a full piece of input digests stored, if one is due, then the
        transaction."""
        if piece is not None:
            self.ctx.inputs.write(*piece)
        return pipe.execute()

    def cursor_matches(self) -> bool:
        """Redis still holds the head this scheduler sealed last (a restart without a synced AOF
        can lose the last writes); if not, go back to the head it has -- authenticated: a head
        that does not open is ``StateError``, the plain counts are never read."""
        ctx = self.ctx
        head = ctx.read_head()
        if head == ctx.head:
            return True
        ours = ctx.head
        if head.enqueued > ours.enqueued or (None not in (head.total, ours.total) and head.total != ours.total):
            # Redis losing writes leaves an older head, never one ahead of this scheduler's or with
            # another record count: that one was re-sealed (a data-key holder with Redis access:
            # a total raised got a record the data does not hold signed, ninth review G2)
            ctx.still_ours()
            raise StateError(
                ctx.id,
                f"the enqueue's sealed head in Redis says {head.enqueued} records queued (total {head.total}), "
                f"this scheduler sealed {ours.enqueued} (total {ours.total})",
            )
        log.warning(
            "workload %s: Redis holds the enqueue at %d records, this scheduler queued %d; re-reading from there",
            ctx.id,
            head.enqueued,
            ctx.head.enqueued,
        )
        self.stream.open()
        return False

    def _eager(self) -> bool:
        """The first window is held back for a measurement, for less than
        ``FIRST_WINDOW_EAGER_SECONDS`` so far: the loop is to look again soon (not "full")."""
        if not self.first_window:
            return False
        now = time.monotonic()
        if not self._held_since:
            self._held_since = now
        return now - self._held_since < FIRST_WINDOW_EAGER_SECONDS

    def _window(self) -> int:
        """Chunks to keep in flight: ``RQP_WINDOW_CHUNKS`` when set, else ``WINDOW_PER_WORKER`` per
        worker (at least ``MIN_WINDOW``) -- but, with adaptive sizing, only
        ``FIRST_WINDOW_PER_WORKER`` per worker until the workers have measured a chunk."""
        s = self.ctx.settings
        self.first_window = False
        if s.window_chunks:
            return s.window_chunks
        if time.monotonic() - self._workers_checked > WORKERS_CHECK_SECONDS:
            self.workers_seen = Worker.count(connection=self.ctx.r, queue=self.ctx.queues[Priority.NORMAL])
            self._workers_checked = time.monotonic()
        window = max(MIN_WINDOW, WINDOW_PER_WORKER * self.workers_seen)
        if s.adaptive_chunks and not self.measured:
            self._adapt_chunk_size()  # a chunk measured since the last look sizes the rest now
            if not self.measured:
                self.first_window = True
                return min(window, FIRST_WINDOW_PER_WORKER * max(1, self.workers_seen))
        return window

    def _adapt_chunk_size(self) -> None:
        s = self.ctx.settings
        if not s.adaptive_chunks:
            return
        records, seconds, cpu_records, cpu = self.ctx.ledger.sizing_perf()
        self.measured = self.measured or records > 0
        if not records or not seconds:
            return
        self.per_record = seconds / max(1, records)
        sizing = sizing_seconds(self.per_record, cpu / cpu_records if cpu_records else None)
        estimate = None
        if self._bytes_enqueued and self._records_enqueued:
            estimate = self.ctx.workload.manifest.data.plain_size / (self._bytes_enqueued / self._records_enqueued)
        self.chunk_size = chunk_size_for(sizing, s, max(1, self.workers_seen), estimate, self.ctx.head.enqueued)

    @property
    def chunk_seconds(self) -> float:
        """The expected work of one chunk now queued (0 before any was measured)."""
        return self.chunk_size * self.per_record

    def _prepare(self, chunks: list[Batch], known: set[str]) -> tuple[Pipeline, Head]:
        """One transaction that queues ``chunks`` from the cursor on: per chunk its records (one
        value, sealed under the chunk's own key), a sealed spec and an RQ job; failed statuses
        for malformed records; the head. A record's "queued" state is not written: no status
        record, an id below the cursor and neither bit set means queued
        (``rqp.status.record_status``). Chunks in ``known`` (Redis has them already) are passed
        over. Returns the transaction and the head it seals."""
        ctx = self.ctx
        now = time.time()
        w = ctx.workload
        id_field = w.manifest.id_field
        lines = ctx.lines
        rid = ctx.head.enqueued
        chunk_no = ctx.head.chunks
        statuses: list[tuple[int, bytes]] = []
        published: list[bytes] = []
        malformed: list[int] = []
        specs: list[ChunkSpec] = []
        pipe = ctx.r.pipeline(transaction=True)
        for batch in chunks:
            if not batch:
                continue
            if chunk_name(ChunkKind.DATA, chunk_no) in known:
                log.warning("workload %s: chunk %d is in Redis already; not queued again", ctx.id, chunk_no)
                rid += len(batch)
                chunk_no += 1
                continue
            key_of: dict[int, str] = {}
            ids: Sequence[int]
            good: Sequence[bytes]
            payloads, errors = zip(*batch, strict=True)
            if id_field is None and errors.count(None) == len(errors):
                # the usual chunk: every record parsed and no ids to read -- no Python step per record
                ids, good = range(rid, rid + len(batch)), payloads
                self._bytes_enqueued += sum(map(len, payloads)) + len(batch)
                rid += len(batch)
            else:
                listed: list[int] = []
                parsed: list[bytes] = []
                for payload, parse_error in batch:
                    error = parse_error
                    if error is None and id_field is not None:
                        key, error = record_key(payload, id_field, rid, lines, max_depth=ctx.settings.max_json_depth)
                        if key is not None:
                            key_of[rid] = key
                    if error is not None:
                        raw = StatusRecord(ctx.id, rid, FAILED, 0, error, now, None, now, ctx.me, None).to_json()
                        statuses.append((rid, w.seal("status", rid, raw)))
                        published.append(raw)
                        malformed.append(rid)
                    else:
                        listed.append(rid)
                        parsed.append(payload)
                        self._bytes_enqueued += len(payload) + 1
                    rid += 1
                ids, good = listed, parsed
            if good:
                chunk = chunk_name(ChunkKind.DATA, chunk_no)
                first, count = ids[0], len(ids)
                if ids[-1] - first + 1 == count:  # ids ascend: consecutive, one run
                    specs.append(chunk_spec(ctx, chunk, [], now, key_of, runs=((first, count, 1),)))
                    ids = range(first, first + count)
                else:  # malformed records left gaps
                    specs.append(chunk_spec(ctx, chunk, [(i, 1) for i in ids], now, key_of))
                # the chunk's records as one value under its own key, bound to their ids
                ctx.ledger.put_chunk(pipe, chunk, seal_records(w.scope(chunk), ids, good))
            chunk_no += 1
        queue_specs(ctx, pipe, specs, 0)
        ctx.ledger.put_statuses(pipe, statuses)
        ctx.ledger.mark_failed(pipe, malformed)
        if published:
            queue = ctx.settings.status_queue
            outbox_add(pipe, queue, pack_messages(w, queue, "status", published, ctx.mq.max_message_bytes), now)
        head = ctx.head.advanced(
            rid - ctx.head.enqueued, chunk_no - ctx.head.chunks, rid if self.stream.exhausted else None
        )
        ctx.ledger.advance(pipe, head, head.seal(w))
        ctx.ledger.show_read(pipe, self.stream.read_bytes, w.manifest.data.plain_size)
        return pipe, head
