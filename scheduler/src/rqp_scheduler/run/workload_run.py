"""``WorkloadRun``: the short loop that drives one workload's collaborators.

``start()`` takes the lock, checks the script and begins (or resumes) the workload; ``step()``
does a bounded amount of work and returns -- enqueue, due retries, reclaim, housekeeping, finish
-- or, while the workload is paused or cancelling, the held path.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from rqp import sandbox
from rqp.backends import Backends
from rqp.errors import IntegrityError, RqpError, ScriptError, StorageUnavailableError
from rqp.ledger import Control, Counters, Head, Ledger, Meta, State, flush_outbox, record_rejection
from rqp.summary import SUMMARY_BLOB, Summary, read_summary
from rqp.workload import SHRED_BYTES, SHRED_MARKER, SUPERSEDED, Workload, blob_name

from ..consolidate import StateError
from .checkpoint import RESUME_CHUNK_GAP, Checkpointer, marked_round
from .context import RunContext
from .control import Controls
from .enqueue import Enqueuer
from .finish import Finisher
from .held import Held
from .lock import LOCK_SECONDS
from .reclaim import Reclaimer
from .records import RecordStream
from .retries import Retrier

__all__ = ["WorkloadRun", "step_wait", "window_full_wait"]

log = logging.getLogger("rqp.scheduler")

RECLAIM_INTERVAL = 1.0
RQ_CHECK_INTERVAL = 5.0
OUTBOX_INTERVAL = 5.0
PROGRESS_INTERVAL = 2.0
#: how long the scheduler's loop may block between steps, while records remain to be read / after
WAIT_ENQUEUING = 0.02
WAIT_EXHAUSTED = 0.1
#: the longest the loop blocks while the window is full (it also bounds how late a pause, a cancel
#: or a due retry is seen then)
WAIT_WINDOW_FULL_MAX = 0.5


def window_full_wait(chunk_seconds: float) -> float:
    """How long the loop may block while the window is full: about one chunk's time (a full window
    holds ``WINDOW_PER_WORKER`` or more chunks per worker, so stepping once per chunk keeps every
    worker supplied), between ``WAIT_EXHAUSTED`` and ``WAIT_WINDOW_FULL_MAX``. Each step costs the
    scheduler ~0.5-1 ms of CPU (Redis round trips for the window, controls, retries): at 0.1 s
    steps that was a cost per second, i.e. per record of a slow script, not per chunk."""
    return min(WAIT_WINDOW_FULL_MAX, max(WAIT_EXHAUSTED, chunk_seconds))


def step_wait(*, exhausted: bool, window_full: bool, in_flight: int, workers: int, chunk_seconds: float) -> float:
    """How long the loop may block before its next step (the policy; ``WorkloadRun.wait_hint``
    gathers its inputs). Records still to queue and room in the window: ``WAIT_ENQUEUING``. A full
    window: ``window_full_wait``. Every record queued: ``WAIT_EXHAUSTED``, so the end is seen
    soon after the last commit -- but while more than two chunks per worker are still in flight
    the end is at least a chunk away, and the loop waits as for a full window (a slow script's
    tail of queued chunks was most of the scheduler's steps)."""
    if exhausted:
        if in_flight > 2 * max(1, workers):
            return window_full_wait(chunk_seconds)
        return WAIT_EXHAUSTED
    if window_full:
        return window_full_wait(chunk_seconds)
    return WAIT_ENQUEUING


class WorkloadRun:
    """One workload's run (see the module's docstring). ``hosts``: the script hosts (a cold
    factory of its own if not given); ``writer``: the thread that sends enqueue transactions,
    shared by a scheduler's runs."""

    def __init__(
        self,
        backends: Backends,
        workload_id: str,
        hosts: sandbox.HostFactory | None = None,
        writer: ThreadPoolExecutor | None = None,
    ) -> None:
        settings = backends.settings
        self.hosts = hosts or sandbox.HostFactory(sandbox.SandboxConfig.from_settings(settings), warm=False)
        #: one thread that sends enqueue transactions, so sealing the next batch overlaps Redis
        #: applying the last (the socket wait releases the GIL)
        self.writer = writer or ThreadPoolExecutor(max_workers=1, thread_name_prefix="rqp-enqueue")
        self.ctx = ctx = RunContext(backends, workload_id)
        self.lock = ctx.lock
        self.stream = RecordStream(ctx, self.hosts)
        self.enqueuer = Enqueuer(ctx, self.stream, self.writer)
        self.retrier = Retrier(ctx)
        self.reclaimer = Reclaimer(ctx)
        self.held = Held(ctx)
        self.finisher = Finisher(ctx, self.hosts)
        self.controls = Controls(ctx)
        self.checkpoints = Checkpointer(ctx)
        self.finished = False
        #: the sealed summary of the run that ended here (None: not ended by this run)
        self.summary: Summary | None = None
        #: when each periodic task last completed (monotonic)
        self._last = {"reclaim": 0.0, "rq": 0.0, "outbox": 0.0, "progress": 0.0, "lock": 0.0, "checkpoint": 0.0}

    @property
    def id(self) -> str:
        return self.ctx.id

    @property
    def ledger(self) -> Ledger:
        return self.ctx.ledger

    @property
    def workload(self) -> Workload:
        return self.ctx.workload

    @property
    def exhausted(self) -> bool:
        """Every record has been read (and queued, or failed as malformed)."""
        return self.stream.exhausted

    # ------------------------------------------------------------------ start / resume
    def start(self) -> WorkloadRun:
        ctx = self.ctx
        self.lock.take()
        meta = ctx.ledger.meta()
        head: Head | None = None
        #: the ended generation this one replaces, and its sealed head (``_next_generation``)
        superseded: tuple[Workload, Head] | None = None
        if meta:
            try:
                # the workload that was started is the one that resumes: a replaced one is refused,
                # unless it is the next generation of one that ended (``_next_generation``)
                try:
                    ctx.workload.check_pin(ctx.ledger.pin())
                except IntegrityError as refused:
                    superseded = self._next_generation(refused)
            except RqpError:
                self.lock.release()
                raise
        if meta and superseded is None:
            try:
                head = ctx.read_head()
            except IntegrityError as exc:
                self.finisher.fail(str(exc), generic=str(exc))
                raise
            if head.closed and not self.controls.retry_requested(head.round + 1):
                # ended: a submission (anyone can RPUSH one) never runs it again, and nothing of
                # it is touched; only a signed 'rqp retry --failed' does, for the round it names
                self._ended(meta.get(Meta.STATE, "?"))
                return self
        #: a retry round Redis was lost in: the summary of the round before it (``_sealed_before``)
        lost_round: Summary | None = None
        if not meta:
            has_ended, lost_round = self._sealed_before()
            if has_ended:
                # no Redis state, yet this generation's summary of its current round is sealed: it
                # ended and its keys were deleted (a Redis writer undoing a signed cancel, or
                # re-running a done workload, with stale checkpoint segments put back or not)
                self._ended("?", why="Redis holds no state of it but its sealed summary exists, of its current round")
                return self
        try:
            ctx.workload.check_runnable(time.time())
        except IntegrityError:
            self.lock.release()
            raise
        source = ctx.workload.script_source()
        try:
            # the script's import and setup() run in a script host, never in this process
            sandbox.check_script(self.hosts, ctx.id, source)
        except ScriptError as exc:
            self.finisher.fail(str(exc))
            raise
        if head is None:
            m = ctx.workload.manifest
            if superseded is not None:
                # its generation's Redis state goes; its blobs stay readable until this one ends
                ended = superseded[1]
                # retry chunks: as many as Redis says, bounded by what the sealed head allows
                seq = meta.get(Meta.RETRY_SEQ, "")
                retries = min(int(seq) if seq.isdigit() else 0, ended.enqueued * max(1, ctx.settings.max_attempts))
                cleared = ctx.ledger.clear_generation(ended.chunks, retries)
                log.info(
                    "workload %s: a new generation (packed %s) replaces the one that ended; %d keys of that one cleared",
                    ctx.id, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.created)), cleared,
                )  # fmt: skip
            ctx.ledger.begin(
                now=time.time(), fmt=m.format, scheduler=ctx.me, max_attempts=ctx.settings.max_attempts,
                pin=ctx.workload.seal_pin(), signer=ctx.workload.signer, head=Head().seal(ctx.workload),
            )  # fmt: skip
            if lost_round is not None:
                self._resume_round(lost_round)  # a retry round Redis was lost in: run again from its start
            elif superseded is None:
                self.checkpoints.restore()  # Redis was lost: from the blob store's checkpoint, if any
            self.finisher.event("started", {"format": m.format, "data_bytes": m.data.plain_size}, background=True)
            log.info("workload %s: started", ctx.id)
            if superseded is not None:
                self._shred_if_asked(superseded[0])
        else:
            if head.closed:  # finished, and run again by a signed 'rqp retry'
                try:
                    self.retrier.begin_round(head)
                except IntegrityError as exc:
                    self.finisher.fail(str(exc), generic=str(exc))
                    raise
            ctx.ledger.resume(ctx.me)
            log.info("workload %s: resuming after %s records", ctx.id, head.enqueued)
        self.stream.source = source
        self.stream.open()
        return self

    def _next_generation(self, refused: IntegrityError) -> tuple[Workload, Head]:
        """The previous generation of a workload re-packed after it ended (``rqp pack --replace``:
        ``rqp.workload.supersede``), when the pin in Redis is not the current manifest's; raises
        ``refused`` (the pin's own refusal, with why) unless every check below holds, so that
        neither a Redis writer nor a blob writer can use it to replace a running workload or to
        run an old version again:

        * the superseded generation opens under the same checks as any workload (a trusted,
          unrevoked submitter's signature over its manifest and wrapped key; the KEK unwraps it;
          its MAC): a blob writer cannot make one up.
        * **its** pin is the one Redis holds (sealed under its data key): it is the generation
          this scheduler started. A blob writer who puts an older signed generation under
          ``superseded/`` while another runs has the wrong pin; a Redis writer cannot seal one.
        * its sealed head in Redis is **closed**: that generation ended. A running (or paused,
          or failed-while-reading) one is never replaced, even by its genuine next version --
          the pin keeps refusing it, as before generations existed. A Redis writer cannot close
          a head (sealed); putting back an older closed head of the same generation only
          restarts the current one from scratch, as deleting its keys already does.
        * the current manifest was created **after** the superseded one: a blob writer who swaps
          an ended generation under ``superseded/`` and an older signed version (or the
          generation before it) back as current does not get that older version run again.

        Then the current manifest is a new generation: its Redis state is cleared and it starts
        fresh, with a new pin."""
        ctx = self.ctx
        b = ctx.backends
        if not ctx.store.exists(blob_name(ctx.id, SUPERSEDED + "manifest.json")):
            raise refused  # re-packed while unfinished (or put back): today's refusal, word for word
        try:
            previous = Workload.open(ctx.store, b.keys, ctx.id, b.trust, generation=SUPERSEDED)
        except RqpError as exc:
            raise IntegrityError(f"{refused} (the generation under {SUPERSEDED} does not open: {exc})") from None
        try:
            previous.check_pin(ctx.ledger.pin())
        except IntegrityError:
            raise IntegrityError(
                f"{refused} (the generation under {SUPERSEDED} is not the one pinned in Redis either)"
            ) from None
        try:
            head: Head | None = Head.open(previous, ctx.ledger.head())
        except IntegrityError:
            head = None
        if head is None or not head.closed:
            raise IntegrityError(f"{refused} (the generation it replaces has not ended: its sealed head is not closed)")
        if not ctx.workload.manifest.created > previous.manifest.created:
            raise IntegrityError(
                f"{refused} (it was packed before the generation it would replace: an older version put back)"
            )
        self._kept_summary_is_the_last_round(previous, head, refused)
        return previous, head

    def _kept_summary_is_the_last_round(self, previous: Workload, head: Head, refused: IntegrityError) -> None:
        """The summary ``rqp pack --replace`` kept under ``superseded/`` must be of the round the
        generation ended in (its closed sealed head's): the packer holds no KEK and keeps what it
        finds, so an earlier round's blobs put back before the re-pack were kept, and shown as
        "the generation it replaced", unless refused here (eighth review, E4)."""
        store = self.ctx.store
        name = previous.blob(SUMMARY_BLOB)
        if not store.exists(name):
            return  # --shred-previous: only the manifest and the key were kept
        try:
            kept = Summary.from_json(previous.open_sealed("summary", "", store.get(name)), self.ctx.id)
        except IntegrityError:
            raise IntegrityError(
                f"{refused} (the summary kept under {SUPERSEDED} does not open under that generation's key)"
            ) from None
        if kept.sealed_round != head.round:
            raise IntegrityError(
                f"{refused} (the summary kept under {SUPERSEDED} is round {kept.sealed_round}'s, but that generation "
                f"ended in round {head.round}: an earlier round's blobs were put back before 'rqp pack --replace'; "
                f"put back round {head.round}'s {SUMMARY_BLOB}, results.enc, leaves.bin and inputs.bin under "
                f"{SUPERSEDED} from a backup)"
            )

    def _shred_if_asked(self, previous: Workload) -> None:
        """``rqp pack --shred-previous``: now that the new generation has started (its pin is in
        Redis, the previous one's key is no longer needed to tell it apart), overwrite the previous
        generation's wrapped key with random bytes and delete what is left of it."""
        store = self.ctx.store
        if not store.exists(previous.blob(SHRED_MARKER)):
            return
        key = previous.blob("key.json")
        if store.exists(key):
            store.put(key, os.urandom(max(SHRED_BYTES, store.size(key))))
        for name in list(store.list(previous.blob(""))):
            store.delete(name)
        log.info("workload %s: the superseded generation's data key was shredded", self.ctx.id)

    def _sealed_before(self) -> tuple[bool, Summary | None]:
        """For a workload Redis knows nothing of: (whether it ended, the summary a lost retry
        round starts from). It ended when this generation's summary is in the blob store, opens
        under its data key and is of the round the sealed round marker names (``mark_round``; no
        marker: the first) -- or of any round but the one before the marked one. A summary of the
        round before the marked one: ``rqp retry --failed`` began that round and Redis was lost
        while it ran, so it runs again from that summary. A re-pack (``rqp pack --replace``) moves
        the old summary under ``superseded/`` and seals with a new key, so a new generation never
        matches."""
        ctx = self.ctx
        if not ctx.store.exists(blob_name(ctx.id, SUMMARY_BLOB)):
            return False, None
        try:
            summary = read_summary(ctx.store, ctx.workload)
        except (RqpError, ValueError):
            return False, None  # not this generation's (or junk): nothing vouches that it ended
        marked = marked_round(ctx.store, ctx.workload)
        if marked is not None and marked == summary.sealed_round + 1 and summary.final_state == "done":
            return False, summary
        return True, None

    def _resume_round(self, before: Summary) -> None:
        """Redis was lost entirely while a ``rqp retry --failed`` round ran: begin that round
        again, from the sealed summary of the round before it (its failed records queued again),
        with the counts that summary vouches for shown meanwhile. The lost run's own chunks were
        never sealed anywhere outside Redis: its records run again."""
        ctx = self.ctx
        closed = Head(before.total, before.chunks, before.total, before.sealed_round, closed=True)
        pipe = ctx.r.pipeline(transaction=True)
        ctx.ledger.advance(pipe, closed, closed.seal(ctx.workload))
        pipe.hset(ctx.ledger.k.n, mapping={Counters.DONE: before.done, Counters.FAILED: before.failed})
        # retry chunks numbered past any the lost Redis can have queued (each carried at least one
        # record's attempt, at most max_attempts per record and round): a processor that commits
        # one of the lost run's chunks late finds no pending job of that name
        attempts = max(1, ctx.settings.max_attempts) * max(1, before.total) * (before.sealed_round + 1)
        pipe.hset(ctx.ledger.k.meta, Meta.RETRY_SEQ, attempts + RESUME_CHUNK_GAP)
        pipe.execute()
        self.retrier.begin_round(closed)
        log.info(
            "workload %s: Redis did not know it; round %d (rqp retry) runs again from round %d's summary",
            ctx.id, before.sealed_round + 1, before.sealed_round,
        )  # fmt: skip

    def _ended(self, shown: str, why: str = "its sealed head is closed") -> None:
        """The workload's sealed head (or summary) says it ended: nothing to schedule. When Redis
        shows it as anything but ended, someone wrote that (or a submission) behind rqp's back:
        recorded."""
        ctx = self.ctx
        self.finished = True
        self.lock.release()
        if shown not in (State.DONE, State.CANCELLED, State.FAILED):
            reason = (
                f"workload {ctx.id} has ended ({why}) but Redis shows it {shown}: not run again; "
                f"'rqp retry {ctx.id} --failed' runs its failed records"
            )
            record_rejection(ctx.r, job=f"submission:{ctx.id}", workload=ctx.id, worker=ctx.me, reason=reason)
            log.warning("%s", reason)

    def reset_after_error(self) -> None:
        """Redis failed mid-step: whether the last chunk was enqueued is unknown, so the record
        stream is opened again at Redis's cursor on the next step."""
        self.stream.reset()

    def wait_hint(self) -> float:
        """How long the loop may block before stepping again (``step_wait``): briefly while
        records are waiting to be queued and the window has room; about a chunk's time while
        the chunks in flight keep every worker busy (each step costs the scheduler CPU: with a
        slow script, stepping every 20 ms, then every 100 ms, was most of its CPU per record)."""
        e = self.enqueuer
        in_flight = self.ctx.ledger.in_flight() if self.exhausted and e.chunk_seconds else 0
        return step_wait(
            exhausted=self.exhausted,
            window_full=e.window_full,
            in_flight=in_flight,
            workers=e.workers_seen,
            chunk_seconds=e.chunk_seconds,
        )

    # ------------------------------------------------------------------ one step
    def step(self) -> bool:
        """Advance; True once the workload is finished (summary written). Redis state (``StateError``)
        or data (a tampered or truncated ``data.enc``) that does not authenticate fails the workload
        for all to see."""
        if self.finished:
            return True
        try:
            return self._step()
        except IntegrityError as exc:
            if self.ctx.ledger.state() != State.FAILED:
                self.finisher.fail(str(exc), generic=str(exc))
            self.stream.close()
            raise

    def _step(self) -> bool:
        self.stream.reopen_if_needed()
        now = time.monotonic()
        self._every("lock", LOCK_SECONDS / 3, now, self.lock.renew)
        control = self.controls.poll()
        if control is not None:
            return self._held(control, now)
        if self.held.parked:
            self.held.unpark()
        try:
            self.enqueuer.fill_window()
        except ScriptError as exc:  # the script's parse() failed: the workload cannot be read
            self.finisher.fail(*_parse_failed(exc, self.ctx.head.enqueued))
            self.stream.close()
            raise
        self.retrier.queue_due()
        self._every("reclaim", RECLAIM_INTERVAL, now, self.reclaimer.expired)
        rq_every = RECLAIM_INTERVAL if self.reclaimer.looking else RQ_CHECK_INTERVAL  # faster after a rollback
        self._every("rq", rq_every, now, self.reclaimer.lost)
        self._every("checkpoint", self.checkpoints.interval, now, self.checkpoints.write)
        self._housekeeping(now)
        if self.exhausted and self.ctx.ledger.idle() and self.enqueuer.cursor_matches():
            try:
                self._finish()
            except StorageUnavailableError as exc:
                log.warning("workload %s: cannot write results yet (%s); will retry", self.id, exc)
                return False
            except IntegrityError as exc:
                # Redis's state (or a result part) does not add up under the workload's key: fail
                # it for all to see, never finish it short
                if not isinstance(exc, StateError):
                    self.finisher.fail(str(exc), generic=str(exc))
                    self.stream.close()
                raise
            return True
        return False

    def _held(self, control: Control, now: float) -> bool:
        """A step while paused or cancelling: nothing new is queued; chunks in hand finish (a
        dead worker's chunk is still re-run, and parked like the rest). Cancelling ends, once
        nothing is in flight, in a consolidated, ``cancelled`` workload."""
        self.held.park()
        if control is Control.CANCEL:
            self.held.drop()
        self._every("reclaim", RECLAIM_INTERVAL, now, self.reclaimer.expired)
        self._housekeeping(now)
        if control is Control.CANCEL and self.ctx.ledger.in_flight() == 0:
            self._finish(cancelled=True, unread=self.stream.count_rest())
            return True
        return False

    def _finish(self, cancelled: bool = False, unread: int = 0) -> None:
        self.summary = self.finisher.finish(cancelled=cancelled, unread=unread)
        self.checkpoints.discard()
        self.stream.close()
        self.finished = True

    def _every(self, what: str, interval: float, now: float, task: Callable[[], object]) -> None:
        """Run a periodic ``task`` when ``interval`` has passed since it last completed."""
        if now - self._last[what] > interval:
            task()
            self._last[what] = now

    def _housekeeping(self, now: float) -> None:
        """What every step does, running or held: publish the outbox, announce progress."""
        self._every("outbox", OUTBOX_INTERVAL, now, lambda: flush_outbox(self.ctx.r, self.ctx.mq))
        self._every("progress", PROGRESS_INTERVAL, now, self.finisher.progress)

    # ------------------------------------------------------------------ kept for tests/security
    def _reclaim_expired(self) -> None:
        """``reclaimer.expired()`` (tests outside the scheduler's own call it by this name)."""
        self.reclaimer.expired()

    def _reclaim(self, jid: str, reason: str) -> None:
        """``reclaimer.reclaim()`` (tests outside the scheduler's own call it by this name)."""
        self.reclaimer.reclaim(jid, reason)


def _parse_failed(exc: ScriptError, queued: int) -> tuple[str, str]:
    """The sealed and the clear reason of a ``--format script`` workload whose parse() raised: how
    many records were queued before it (what 'rqp status' counts as read) beside how many parse()
    produced -- records are queued a chunk at a time, so those of the chunk being filled never
    ran ("0 records read" beside "raised after 1 records" read as a contradiction)."""
    count = f"{queued:,} record{'s' if queued != 1 else ''} read and queued before it"
    sealed = f"{exc} ({count}: a chunk is queued once full, so the records of the chunk being filled never ran)"
    generic = (
        f"the script's parse() failed while reading the data ({count}; details are encrypted: run 'rqp status' "
        f"with the KEK, or see the scheduler's log)"
    )
    return sealed, generic
