"""``Scheduler``: one process supervising many workloads, each a ``WorkloadRun`` stepped in turn."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from rqp import sandbox
from rqp.backends import Backends
from rqp.config import Settings
from rqp.errors import BlobNotFoundError, IntegrityError, RqpError
from rqp.ledger import SUBMISSIONS, WORKLOADS, WorkloadKeys, next_submission, record_rejection, text, unfinished
from rqp.summary import Summary, read_summary

from .refusals import Refusals
from .run import LOCK_SECONDS, WorkloadRun
from .run.lock import LockHeldError, LockLost
from .wakeup import SubmissionListener, Wakeup

__all__ = [
    "LAPSED_LOOK_BATCH",
    "LAPSED_LOOK_SECONDS",
    "REDIS_RETRY_MAX",
    "SPARE_AFTER_IDLE",
    "WAIT_IDLE",
    "WAIT_IDLE_SERVING",
    "Scheduler",
]

log = logging.getLogger("rqp.scheduler")
#: the longest wait between attempts while Redis is unreachable (seconds; doubling from 0.1)
REDIS_RETRY_MAX = 10.0
#: how long the loop blocks with no workload to step
WAIT_IDLE = 1.0
#: ... when serving: a submission is taken within this (each look is one LLEN, a read; the fenced
#: pop -- WATCH, GET of the fence, MULTI, LPOP, EXEC -- only when something waits). At 1 s, a
#: workload submitted to an idle service waited 0.5 s on average before its first record was read.
#: One announced on ``rqp:submitted`` (``rqp submit`` does) is taken at once (``wakeup``): this is
#: the wait of one that is not (an older client, a Redis user without the channel in its ACL).
WAIT_IDLE_SERVING = 0.1
#: a serving scheduler with nothing to run for this long starts a spare script host (a fresh
#: interpreter, confined, no workload in it), so the next submission's script check does not wait
#: for one to start (~50 ms of CPU, ~0.1 s on a busy machine). Not at once: a workload that just
#: ended is consolidated and its service may be stopped; 1 s idle is a service waiting for work.
SPARE_AFTER_IDLE = 1.0
#: how often a serving scheduler looks for unfinished workloads nobody supervises (their lock
#: lapsed: the scheduler that ran them -- a one-off ``rqp-scheduler run``, a notebook's -- is
#: gone) and takes them over. A lock is renewed every third of its TTL by a live scheduler
#: (``LockKeeper``), so a lapsed one means its holder stopped; one merely paused past it is
#: fenced out (``rqp_scheduler.run.lock``).
LAPSED_LOOK_SECONDS = LOCK_SECONDS / 3
#: how many of ``rqp:workloads`` each look reads (in turn): a workload this scheduler never met,
#: its lock lapsed, is taken over within ``len(rqp:workloads) / LAPSED_LOOK_BATCH`` looks
LAPSED_LOOK_BATCH = 1000


class Scheduler:
    """Steps every workload it runs in turn (``loop``); ``serve`` also takes new submissions
    and rides out Redis outages, re-reading each workload from Redis's cursor."""

    def __init__(self, settings: Settings, redis_client: redis.Redis | None = None) -> None:
        self.settings = settings
        #: every client, opened now: a misconfigured one fails the start with one line
        #: (``redis_client``: a serving leader's, every write fenced by its lease: ``leader``)
        self.backends = Backends(settings, retry_storage=True, redis_client=redis_client).open_all()
        #: whose signed control requests count: a wrong RQP_TRUSTED_OPERATORS_FILE fails the start
        self.operators = self.backends.operators
        self.r = self.backends.redis
        self.sandbox = sandbox.SandboxConfig.from_settings(settings)
        #: what the script hosts of this host can apply (checked against RQP_REQUIRE_SANDBOX); the
        #: host that found it out is kept as the first spare, not ended and started again
        self.protections, probed = sandbox.probe_host(self.sandbox)
        #: script hosts for the workloads' import checks and parse(), one kept warm
        self.hosts = sandbox.HostFactory(self.sandbox, spare=probed)
        #: sends the enqueue transactions of every workload this scheduler runs
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rqp-enqueue")
        self.runs: dict[str, WorkloadRun] = {}
        #: the loop's wait, cut short by a stop or (serving) by a submission announced
        self.wakeup = Wakeup()
        self.stop: threading.Event = self.wakeup.stop
        #: the thread that wakes the loop for an announced submission (serving only)
        self.listener: SubmissionListener | None = None
        #: since when a serving scheduler has had nothing to run (monotonic), and whether it
        #: started a spare script host in that idle spell (once: a host that fails to start is
        #: not retried every look)
        self._idle_since: float | None = None
        self._spared = False
        self.failures: dict[str, str] = {}
        #: the exit code of each workload's error (``rqp.errors``: 4 for data that does not authenticate)
        self.failure_codes: dict[str, int] = {}
        #: whether errors go to the log as they happen (serve); ``run`` prints each once, at the end
        self.serving = False
        #: the sealed summary of each workload that ended (what ``run`` reports and exits by)
        self.summaries: dict[str, Summary | None] = {}
        #: where a refused submission is recorded for the people who submitted it
        self.refusals = Refusals(self.backends)
        #: the workloads another scheduler held when this one met them (a lock held, or taken over
        #: from this one): looked at again when their lock lapses (``take_lapsed``)
        self.elsewhere: set[str] = set()
        #: where in ``rqp:workloads`` the next look for lapsed locks begins (``take_lapsed``)
        self._look_from = 0
        #: when a serving scheduler next looks for lapsed locks (monotonic)
        self._next_lapsed_look = time.monotonic() + LAPSED_LOOK_SECONDS

    def add(self, workload_id: str, submitted: bool = False) -> None:
        if workload_id in self.runs:
            return
        try:
            run = WorkloadRun(self.backends, workload_id, hosts=self.hosts, writer=self.writer)
        except RqpError as exc:  # the signature, the key, the tombstone: checked before anything runs
            self.refusals.refused(workload_id, exc)
            raise
        try:
            run.start()
        except RqpError as exc:
            run.lock.abandon()
            self.refusals.refused(workload_id, exc)  # when Redis holds no state of it (else its state says)
            raise
        except (redis.ConnectionError, redis.TimeoutError):
            run.lock.abandon()
            raise
        except Exception as exc:  # noqa: BLE001 - one workload's data never stops the scheduler
            err = self._unexpected(run, exc)
            run.lock.abandon()
            raise err from None
        self.refusals.started(workload_id)
        if run.finished:
            summary = self._summary_of(run)
            self.summaries[workload_id] = summary
            state = summary.final_state if summary is not None else "ended"
            log.info("workload %s is already %s; nothing to schedule", workload_id, state)
            if submitted:  # a submission (anyone with Redis can push one) of an ended workload: recorded
                record_rejection(
                    self.r, job=f"submission:{workload_id}", workload=workload_id, worker=run.ctx.me,
                    reason=f"workload {workload_id} has ended ({state}); a submission does not run it again "
                    f"('rqp retry {workload_id} --failed', signed, runs its failed records)",
                )  # fmt: skip
            return
        self.runs[workload_id] = run
        self.failures.pop(workload_id, None)  # an earlier attempt (its lock was held elsewhere) is history
        self.failure_codes.pop(workload_id, None)
        self.elsewhere.discard(workload_id)

    def _summary_of(self, run: WorkloadRun) -> Summary | None:
        try:
            return read_summary(self.backends.blobs, run.workload)
        except (BlobNotFoundError, IntegrityError):
            return None

    def resume_unfinished(self) -> None:
        try:
            found = unfinished(self.r)
        except redis.ResponseError as exc:  # rqp:workloads itself not rqp's: serve what is submitted
            log.error("cannot list the workloads to resume: %s is not rqp's (%s); delete it if nobody should have "
                      "written it", WORKLOADS, str(exc).split(":")[0][:60])  # fmt: skip
            return
        for wid in found:
            self._try_add(wid)

    def take_lapsed(self) -> list[str]:
        """Take over the unfinished workloads whose lock lapsed (serving; every
        ``LAPSED_LOOK_SECONDS``): resumed from Redis's cursor as at a restart. Each look reads the
        workloads this scheduler met held elsewhere and the next ``LAPSED_LOOK_BATCH`` of
        ``rqp:workloads`` (in turn, from the oldest), so its cost does not grow with the list (a
        Redis writer can make it as long as it likes: the thirteenth review, F6). Not looked at
        again: one this scheduler failed to open (its error was said; a submission or a restart
        tries again), and one it found ended (a Redis writer's "running" on an ended workload was
        opened every look, each time checking the signature and unwrapping its key: F1).
        Returns the ids it tried."""
        try:
            window = [
                str(text(w)) for w in self.r.zrange(WORKLOADS, self._look_from, self._look_from + LAPSED_LOOK_BATCH - 1)
            ]
        except redis.ResponseError:
            window = []  # junk in rqp:workloads: said at the start (``resume_unfinished``)
        self._look_from = 0 if len(window) < LAPSED_LOOK_BATCH else self._look_from + LAPSED_LOOK_BATCH
        looked = list(dict.fromkeys([*sorted(self.elsewhere), *window]))
        candidates = [
            w for w in looked
            if w not in self.runs and w not in self.summaries and (w not in self.failures or w in self.elsewhere)
        ]  # fmt: skip
        if not candidates:
            return []
        candidates = unfinished(self.r, candidates)
        pipe = self.r.pipeline(transaction=False)
        for wid in candidates:
            pipe.exists(WorkloadKeys(wid).lock)
        lapsed = [wid for wid, held in zip(candidates, pipe.execute(), strict=True) if not held]
        for wid in lapsed:
            log.info("workload %s: nobody supervises it (its lock lapsed); taking it over", wid)
            self._try_add(wid)
        return lapsed

    def _try_add(self, wid: str, submitted: bool = False) -> None:
        self._idle_since, self._spared = None, False  # its script check took the spare, if any
        try:
            self.add(wid, submitted)
        except RqpError as exc:
            self._failed(wid, exc)
        except (redis.ConnectionError, redis.TimeoutError):
            raise
        except Exception as exc:  # noqa: BLE001 - opening one workload failed in a way nobody foresaw
            where = _where(exc)
            log.error("workload %s: cannot be opened: unexpected %s (%s)", wid, type(exc).__name__, where)
            self._failed(
                wid, RqpError(f"workload {wid} could not be opened: unexpected {type(exc).__name__} ({where})")
            )

    def _unexpected(self, run: WorkloadRun, exc: Exception) -> RqpError:
        """Fail ``run``'s workload for an exception nobody foresaw (a value in Redis that does not
        decode, data that trips a parser): that workload fails, loudly and once -- its state says
        so, so a restarted scheduler does not meet it again -- and every other workload goes on.
        The exception's text may quote the data, so only its sealed form goes to Redis."""
        wid = run.id
        where = _where(exc)
        generic = (
            f"workload {wid} failed in the scheduler: unexpected {type(exc).__name__} while reading or scheduling it "
            f"({where}); the details are sealed ('rqp status {wid}' with the KEK); other workloads go on"
        )
        try:
            run.finisher.fail(f"{type(exc).__name__} at {where}: {exc}", generic=generic)
        except (RqpError, redis.RedisError) as again:
            log.error("workload %s: could not record its failure (%s)", wid, again)
        finally:
            run.stream.close()
        log.error("%s", generic)
        return RqpError(generic)

    def _failed(self, wid: str, exc: RqpError) -> None:
        self.failures[wid] = str(exc)
        self.failure_codes[wid] = exc.exit_code
        held = isinstance(exc, (LockHeldError, LockLost))
        if held:
            self.elsewhere.add(wid)
        else:
            self.elsewhere.discard(wid)
        if self.serving and isinstance(exc, LockHeldError):
            log.info("workload %s: %s", wid, exc)
        elif self.serving and not isinstance(exc, LockLost):  # a lost lock was said when it was found lost
            log.error("workload %s: %s", wid, exc)

    def loop(self, serve: bool = False) -> None:
        """Step the workloads, each pass when the soonest of their waits (``wait_hint``) is up.

        A wake-up before that (a submission announced on ``rqp:submitted``, which anyone allowed
        to PUBLISH there can send as often as they like) takes the submissions and steps only the
        workloads it added: the others keep their wait, so a flood of announcements costs a look
        at the submissions list per wake-up (``WAKE_MIN_GAP``), never a step of every workload
        (the twelfth review, F1: 4.6x the scheduler's CPU under ~450 PUBLISH/s)."""
        self.serving = serve
        backoff = 0.1
        if serve and self.listener is None:
            self.listener = SubmissionListener(self.r, self.wakeup)
            self.listener.start()
        due = 0.0  # when the workloads are next stepped (monotonic)
        while not self.stop.is_set() and (serve or self.runs):
            try:
                step_all = time.monotonic() >= due
                stepped = self.tick(serve, step_all=step_all)
                backoff = 0.1
                if not serve and not self.runs:
                    break  # `run`: the last workload just ended; not a WAIT_IDLE more before exiting
                idle = WAIT_IDLE_SERVING if serve else WAIT_IDLE
                hints = [run.wait_hint() for wid, run in self.runs.items() if wid in stepped]
                now = time.monotonic()
                if step_all:
                    due = now + min(hints, default=idle)
                elif hints:  # a workload the wake-up added: its own wait counts from now
                    due = min(due, now + min(hints))
                if serve:
                    self._spare_when_idle()
                self.wakeup.wait(max(0.0, due - time.monotonic()))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("Redis unreachable (%s); retrying in %.1fs", str(exc).split("\n")[0], backoff)
                for run in self.runs.values():
                    run.reset_after_error()
                self.stop.wait(backoff)
                backoff = min(REDIS_RETRY_MAX, backoff * 2)
                due = 0.0

    def _spare_when_idle(self) -> None:
        """Start a spare script host once per idle spell of ``SPARE_AFTER_IDLE`` (serving)."""
        if self.runs:
            self._idle_since, self._spared = None, False
            return
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
        elif not self._spared and now - self._idle_since >= SPARE_AFTER_IDLE:
            self._spared = True
            self.hosts.make_spare()

    def tick(self, serve: bool = False, step_all: bool = True) -> set[str]:
        """One pass: take new submissions (``serve``), then step every workload once (``step_all``;
        else only the ones just taken). A workload that fails -- foreseen or not -- is taken out;
        the others go on. Returns the ids of the workloads stepped."""
        before = set(self.runs)
        if serve and self.r.llen(SUBMISSIONS):
            while (sub := next_submission(self.r)) is not None:
                self._try_add(sub, submitted=True)
        if serve and (now := time.monotonic()) >= self._next_lapsed_look:
            self._next_lapsed_look = now + LAPSED_LOOK_SECONDS
            self.take_lapsed()
        stepped: set[str] = set()
        for wid, run in list(self.runs.items()):
            if not step_all and wid in before:
                continue
            stepped.add(wid)
            try:
                if run.step():
                    self.summaries[wid] = run.summary
                    del self.runs[wid]
            except RqpError as exc:
                self._failed(wid, exc)
                self._drop(wid)
            except (redis.ConnectionError, redis.TimeoutError):
                raise
            except Exception as exc:  # noqa: BLE001 - one workload never stops the others
                self._failed(wid, self._unexpected(run, exc))
                self._drop(wid)
        return stepped

    def _drop(self, wid: str) -> None:
        """Stop supervising ``wid``: its script host (a ``parse()`` under way) ends with it (the
        eleventh review, F3: a run dropped for a lost lock kept its host)."""
        run = self.runs.pop(wid)
        run.lock.abandon()  # its lock lapses or is free at once: not renewed for a run that is gone
        try:
            run.stream.close()
        except Exception as exc:  # noqa: BLE001 - ending a host is never worth more than a line
            log.warning("workload %s: its script host did not end cleanly (%s)", wid, type(exc).__name__)


def _where(exc: BaseException) -> str:
    """Where ``exc`` was raised, as ``file.py:line`` (no values: they may be the user's data)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown place"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno}"
