"""One worker process: an RQ SimpleWorker that can run nothing but rqp chunks.

SimpleWorker (no fork per job) keeps the workload context -- unwrapped key, decrypted script --
and the workload's script host warm across chunks. The user's code runs only in script hosts
(``rqp.sandbox``): one confined process per workload, never reused for another, holding no key.

A worker never outlives its ``rqp-processor`` (``--parent``), however the supervisor goes
(SIGKILL, the OOM killer): the kernel kills the worker with it (``PR_SET_PDEATHSIG``), and the
worker's loops -- RQ's dequeue loop, including its Redis retry and backoff, and a watchdog thread
for calls that block -- check that its parent is still the supervisor. Its script hosts die with
it (they set the same death signal before they confine themselves; see ``rqp.sandbox``).
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import logging
import os
import signal
import sys
import threading
import time

import redis
from redis.client import Pipeline, PubSub, PubSubWorkerThread
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job, JobStatus, get_current_job
from rq.rate_limit import release_slot
from rq.registry import StartedJobRegistry
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import now
from rq.worker import WorkerStatus

from rqp import identity, sandbox
from rqp import metrics_http as metrics
from rqp.backends import Backends
from rqp.config import Settings
from rqp.errors import RqpError
from rqp.hardening import harden_process
from rqp.jobs import JSONSerializer, RqpJob
from rqp.ledger import queue_names

from .chunk import ChunkProcessor, JobResult

__all__ = [
    "BEAT_REPEAT_SECONDS",
    "EXIT_ORPHANED",
    "ParentWatch",
    "RqpWorker",
    "build_worker",
    "die_with_parent",
    "job_class_for",
    "main",
]

log = logging.getLogger("rqp.processor")

PR_SET_PDEATHSIG = 1
#: a worker that finds its supervisor gone exits with this (nobody is left to read it)
EXIT_ORPHANED = 75
#: seconds between the watchdog's checks that the supervisor is still this worker's parent
PARENT_CHECK_SECONDS = 0.5


def die_with_parent(parent: int) -> bool:
    """Have the kernel SIGKILL this process when its parent (the supervisor, pid ``parent``) dies.
    The death signal is armed for whoever is the parent *now*: if the supervisor died between
    starting this process and this call, the parent is already someone else (init, a subreaper)
    and this process exits at once. Returns whether the kernel took the death signal."""
    armed = False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        libc.prctl.restype = ctypes.c_int
        armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux: the parent checks alone
        pass
    ParentWatch(parent).check()
    return armed


class ParentWatch:
    """Whether this worker's supervisor is still its parent; exits the process when it is not.
    Checked by RQ's loops (every heartbeat: each dequeue, each Redis retry, each job) and by a
    watchdog thread that also covers calls that block (a long BLPOP, a backoff sleep, a script)."""

    def __init__(self, parent: int) -> None:
        self.parent = parent

    def gone(self) -> bool:
        return os.getppid() != self.parent

    def check(self) -> None:
        if self.gone():
            # no one is left to hand this worker's chunk back: its lease runs out and the scheduler
            # re-runs it; the script hosts die with this process (their own death signal)
            print(
                f"rqp-processor worker {os.getpid()}: supervisor {self.parent} is gone; exiting",
                file=sys.stderr,
                flush=True,
            )
            os._exit(EXIT_ORPHANED)

    def start(self) -> ParentWatch:
        def watch() -> None:
            while True:
                self.check()
                time.sleep(PARENT_CHECK_SECONDS)

        threading.Thread(target=watch, name="rqp-parent-watch", daemon=True).start()
        return self


def job_class_for(processor: ChunkProcessor) -> type[RqpJob]:
    """rqp's job class bound to this worker's chunk processor: the one entry point a job can
    reach, and where rejected jobs are recorded. Made per worker, so nothing is patched."""

    def entry(workload_id: str, sealed_spec: str) -> JobResult:
        job = get_current_job()
        assert job is not None
        t0 = time.monotonic()
        outcome = processor.run(job.id, workload_id, sealed_spec)
        if "done" in outcome:  # committed (not skipped, handed back or discarded)
            metrics.CHUNK_SECONDS.observe(time.monotonic() - t0)
        return outcome

    class ProcessorJob(RqpJob):
        def on_reject(self, reason: str) -> None:
            args = self._args if isinstance(self._args, (list, tuple)) else []
            workload = args[0] if args and isinstance(args[0], str) else None
            processor._reject(self.id, workload, reason)

    ProcessorJob.entry = staticmethod(entry)
    return ProcessorJob


#: the longest a worker waits between tries to reach Redis again (RQ's default: 60 s)
RECONNECT_WAIT_MAX_SECONDS = 2.0

#: RQ's worker beats (its hash's ``last_heartbeat`` and two expiries) and writes its state several
#: times per job, each write one round trip of its own, and twice back to back around every dequeue
#: (after the job, then before and after the dequeue): a beat or state write made without a
#: pipeline that repeats the previous one -- same TTL, same state -- within this many seconds is
#: not sent again. The worker's key then expires at most this much earlier than RQ would have had
#: it (RQ's TTL: ``worker_ttl`` + 60 s, 480 s by default); every beat made in one of RQ's own
#: pipelines (its suspension check on every pass, a job's start) still goes out, and after one with
#: another TTL (a job's) so does the next beat on its own.
BEAT_REPEAT_SECONDS = 1.0

#: how long the worker's command-channel listener blocks per read (bounds how long stopping waits for it)
PUBSUB_WAKE_SECONDS = 0.5
#: how long the listener waits before it reconnects to a Redis that went away (RQ's own figure)
PUBSUB_RECONNECT_SECONDS = 2.0
#: how long the listener waits before it listens again after any other error
PUBSUB_RESTART_SECONDS = 0.5


class RqpWorker(SimpleWorker):
    """SimpleWorker with rqp's job class and serializer fixed; nothing else configurable from Redis."""

    #: RQ doubles its wait after each failed dequeue up to 60 s: after a Redis failover (Sentinel
    #: promoting a replica a few seconds in) a worker sat out 1+2+4+8+16 s before it looked again.
    #: Capped, it is back within this long of Redis answering.
    max_connection_wait_time = RECONNECT_WAIT_MAX_SECONDS

    #: the chunk processor its jobs run on (set by ``build_worker``)
    processor: ChunkProcessor
    #: the supervisor this worker must not outlive (``--parent``; None when run on its own)
    parent_watch: ParentWatch | None = None
    #: set when the worker stops listening: ends the listener's wait to reconnect at once
    _pubsub_stopping: threading.Event | None = None
    #: (monotonic time, TTL) of the last beat sent on its own; None after one in a pipeline
    _last_beat: tuple[float, int] | None = None
    #: (monotonic time, state) of the last state written on its own; None after one in a pipeline
    _last_state: tuple[float, str] | None = None
    #: the transaction that records a job's execution, while the job's start is added to it
    _start_pipe: Pipeline | None = None
    #: (monotonic time, whether workers are suspended) read in a job's success transaction
    _suspended_read: tuple[float, bool] | None = None
    #: (monotonic time, whether any queue holds a job) read in a job's success transaction
    _queued_read: tuple[float, bool] | None = None

    def subscribe(self) -> None:
        """RQ's command channel, with a listener thread that looks up every
        ``PUBSUB_WAKE_SECONDS``: RQ starts it with a 60 s wait per read, and redis-py 8's
        ``PubSubWorkerThread.stop()`` waits for that read to end, so a worker told to stop right
        after its unsubscribe was answered sat there up to a minute (past the supervisor's grace
        period: killed, its chunk re-run)."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self._pubsub_stopping = threading.Event()
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment] # RQ types it None
            sleep_time=PUBSUB_WAKE_SECONDS, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def _pubsub_exception_handler(self, exc: Exception, pubsub: PubSub, pubsub_thread: PubSubWorkerThread) -> None:
        """RQ's handler, but its wait to reconnect ends when the worker stops: RQ sleeps 2 s per
        connection error, and stopping the listener waits for that sleep, so a worker told to stop
        after a Redis restart took over 2 s (issue #24 item 20: an idle processor stops in 2 s).

        Any other error (a ``redis.TimeoutError`` while Redis is paused or slow, a malformed
        command) does not end the listener as RQ's handler does: a worker whose listener had died
        stayed deaf to every command (shutdown, kill-horse, stop-job) for the rest of its life."""
        stopping = self._pubsub_stopping or threading.Event()
        if not isinstance(exc, redis.exceptions.ConnectionError):
            self._restart_listener(exc, pubsub, pubsub_thread, stopping)
            return
        if not stopping.is_set():
            self.log.error(
                "Worker %s: could not connect to Redis instance: %s retrying in %d seconds...",
                self.name,
                exc,
                PUBSUB_RECONNECT_SECONDS,
            )
        if stopping.is_set() or stopping.wait(PUBSUB_RECONNECT_SECONDS):
            pubsub_thread.stop()  # called from the listener itself: no wait, its loop just ends

    def _restart_listener(
        self, exc: BaseException, pubsub: PubSub, pubsub_thread: PubSubWorkerThread, stopping: threading.Event
    ) -> None:
        """Listen afresh after ``exc``: the connection, which may hold half a reply, is dropped, and
        the listener's next read opens a new one and subscribes again (redis-py's ``on_connect``)."""
        if not isinstance(exc, Exception) or stopping.is_set():  # KeyboardInterrupt, SystemExit; or stopping
            pubsub_thread.stop()
            return
        self.log.warning(
            "Worker %s: command listener failed (%s: %s); listening again", self.name, type(exc).__name__, exc
        )
        connection = getattr(pubsub, "connection", None)
        if connection is not None:
            connection.disconnect()
        if stopping.wait(PUBSUB_RESTART_SECONDS):  # not a hot loop if it fails again at once
            pubsub_thread.stop()

    def unsubscribe(self) -> None:
        if self._pubsub_stopping is not None:
            self._pubsub_stopping.set()  # first: a listener waiting to reconnect returns and sees the stop
        super().unsubscribe()

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        self._spare_when_idle()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def _keep_listening(self) -> None:
        """Start the command listener again if its thread ended while the worker is not stopping
        (an error out of the listener's own handler): checked at every heartbeat."""
        thread, stopping = self.pubsub_thread, self._pubsub_stopping
        if thread is None or stopping is None or stopping.is_set() or thread.is_alive():
            return
        self.log.warning("Worker %s: command listener had stopped; listening again", self.name)
        if self.pubsub is not None:
            self.pubsub.close()
        self.subscribe()

    def _spare_when_idle(self) -> None:
        """Start the next workload's script host while there is nothing to do: when its queues
        are empty (one round trip, and only when a spare is wanted), not beside a workload's
        records, whose CPU it would take."""
        pool = self.processor.pool
        if not pool.wants_spare:
            return
        ahead, self._queued_read = self._queued_read, None
        if ahead is not None and time.monotonic() - ahead[0] < BEAT_REPEAT_SECONDS:
            if not ahead[1]:
                pool.make_spare()
            return  # read just now, in the last job's success transaction
        try:
            pipe = self.connection.pipeline(transaction=False)
            for q in self._ordered_queues:
                pipe.llen(q.key)
            if any(pipe.execute()):
                return
        except redis.RedisError:
            return  # RQ's own dequeue meets the outage and says so
        pool.make_spare()

    def execute_job(self, job: Job, queue: Queue) -> None:
        """SimpleWorker's ``execute_job`` with RQ's two start transactions sent as one: the
        execution's record (``prepare_execution``: execution hash, the job's execution registry,
        the started registry, the worker's executions, "busy") and the job's start
        (``prepare_job_execution``: beats with the job's TTL, status "started", ``started_at``)
        -- the same writes, one round trip instead of two (issue 28: RQ's cost per chunk)."""
        with self.connection.pipeline() as pipe:
            execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipe, worker_name=self.name)
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self._start_pipe = pipe
            try:
                self.perform_job(job, queue, execution)
            finally:
                unsent, self._start_pipe = self._start_pipe, None
            if unsent is not None:  # RQ started the job some other way: the execution's record as RQ sends it
                unsent.execute()
        self.set_state(WorkerStatus.IDLE)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """RQ's job start, its writes added to the execution's transaction (``execute_job``) and
        sent with it."""
        pipe = self._start_pipe
        if pipe is None:
            super().prepare_job_execution(job, remove_from_intermediate_queue)
            return
        self._start_pipe = None
        heartbeat_ttl = self.get_heartbeat_ttl(job)
        self.heartbeat(heartbeat_ttl, pipeline=pipe)
        job.heartbeat(now(), heartbeat_ttl, pipeline=pipe)
        job.prepare_for_execution(self.name, pipeline=pipe)
        pipe.persist(job.key)
        if remove_from_intermediate_queue:
            pipe.lrem(Queue(job.origin, connection=self.connection).intermediate_queue_key, 1, job.id)
        pipe.execute()
        self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """RQ stamps the job hash's ``last_heartbeat`` here, one round trip of its own, right before
        the transaction that deletes the hash (a finished rqp job keeps no result) or files it as
        failed (whose ``ended_at`` says when): not written. rqp's ledger -- the lease, the commit
        -- not RQ's job hash, says what became of a chunk."""
        job.ended_at = now()

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        """RQ's success bookkeeping for an rqp job in two round trips instead of eight: what RQ's
        delete reads, read at once (``RqpJob.read_for_delete``); then one transaction with RQ's
        own writes -- the worker's counters, the job and its executions deleted from every
        registry -- and the "idle" state and worker beat RQ writes right after, each its own
        round trip, and the reads the next pass starts with (RQ's suspension flag; the queues'
        lengths when a spare script host is wanted), each another round trip. RQ's WATCH of the job's dependents and the read of them are left out: rqp
        jobs have none (the scheduler queues none; one a Redis writer adds is never enqueued
        by an rqp worker). Any other job, or one that keeps a result, takes RQ's path."""
        if not isinstance(job, RqpJob) or job.get_result_ttl(self.default_result_ttl) != 0 or job.repeats_left:
            super().handle_job_success(job, queue, started_job_registry, execution)
            return
        job.read_for_delete(execution)
        if job.record_lost:
            self.log.warning(
                "job %s: its RQ record (%s) was deleted or changed in Redis while it ran (anyone who can write to "
                "Redis can); its chunk's commit stands, RQ's records of the job are removed",
                job.id,
                job.key.decode() if isinstance(job.key, bytes) else job.key,
            )
        try:
            with self.connection.pipeline() as pipe:
                self.increment_successful_job_count(pipeline=pipe)
                assert job.ended_at is not None and job.started_at is not None
                self.increment_total_working_time(job.ended_at - job.started_at, pipe)
                job.cleanup(0, pipeline=pipe, remove_from_queue=False)
                job._status = JobStatus.FINISHED
                self.cleanup_execution(job, pipeline=pipe, execution=execution)
                self.set_state(WorkerStatus.IDLE, pipeline=pipe)
                ttl = self.worker_ttl + 60  # RQ's own default beat
                self.heartbeat(ttl, pipeline=pipe)
                # what the next pass reads first: RQ's `rq suspend` flag; the queues, when a spare is wanted
                pipe.exists(WORKERS_SUSPENDED)
                spare = self.processor.pool.wants_spare
                for q in self._ordered_queues if spare else ():
                    pipe.llen(q.key)
                replies = pipe.execute()
        finally:
            job.forget_reads()
        # what RQ writes next ("idle", a beat with the worker's TTL) was in the transaction
        done = time.monotonic()
        self._last_state, self._last_beat = (done, WorkerStatus.IDLE), (done, ttl)
        lengths = replies[len(replies) - len(self._ordered_queues) :] if spare else []
        self._suspended_read = (done, bool(replies[len(replies) - len(lengths) - 1]))
        self._queued_read = (done, any(lengths)) if spare else None
        release_slot(job)
        self.log.info("Successfully completed job %s on worker %s", job.id, self.name)

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's check of its `rq suspend` flag (a beat and the flag's read, one round trip), unless
        the last job's success transaction read the flag just now and found it unset."""
        ahead, self._suspended_read = self._suspended_read, None
        if ahead is not None and not ahead[1] and time.monotonic() - ahead[0] < BEAT_REPEAT_SECONDS:
            return
        super().check_for_suspension(burst)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's beat, its three writes in one round trip (RQ sends each alone when it is given no
        pipeline), and not at all when it repeats the last one within ``BEAT_REPEAT_SECONDS``.
        The supervisor and listener checks run on every call."""
        # RQ calls this on every pass of its loops, the Redis retry-with-backoff loop included
        if self.parent_watch is not None:
            self.parent_watch.check()
        self._keep_listening()
        ttl = timeout or self.worker_ttl + 60  # RQ's own default
        if pipeline is not None:  # in RQ's own pipeline (its suspension check, a job's start): always written
            if self._last_beat is not None and self._last_beat[1] != ttl:
                self._last_beat = None  # another TTL (a job's): the next beat on its own restores RQ's
            super().heartbeat(timeout, pipeline)
            return
        now = time.monotonic()
        last = self._last_beat
        if last is not None and last[1] == ttl and now - last[0] < BEAT_REPEAT_SECONDS:
            return
        self._last_beat = None  # until this one is known to be written
        pipe = self.connection.pipeline(transaction=False)
        super().heartbeat(ttl, pipe)
        pipe.execute()
        self._last_beat = (now, ttl)

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        """RQ's state write, not sent again when it repeats the last one within
        ``BEAT_REPEAT_SECONDS`` (RQ writes "idle" after a job and again before the next dequeue)."""
        if pipeline is not None:
            self._last_state = None
            super().set_state(state, pipeline)
            return
        now = time.monotonic()
        last = self._last_state
        if last is not None and last[1] == state and now - last[0] < BEAT_REPEAT_SECONDS and self._state == state:
            return
        self._last_state = None
        super().set_state(state)
        self._last_state = (now, state)


def build_worker(settings: Settings, name: str | None = None) -> RqpWorker:
    """The worker ``rqp-processor`` runs: one ``Backends`` (the blob store riding out outages),
    opened whole now so a misconfiguration fails at start in one line, and one script pool."""
    backends = Backends(settings, retry_storage=True).open_all()
    r = backends.redis
    name = name or identity.worker_name()
    pool = sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(settings))
    pool.make_spare(wait=True)  # registered only once it can run a script without a start-up first
    atexit.register(pool.close)  # no script host outlives its worker (they also die with it: PDEATHSIG)
    processor = ChunkProcessor(backends, worker_name=identity.process_identity(), pool=pool)
    atexit.register(processor.publisher.close)  # what waits is published (else the outbox's flush does it)
    job_class = job_class_for(processor)
    # high priority first, then normal, then low (rqp.ledger.Priority)
    queues = [
        Queue(q, connection=r, job_class=job_class, serializer=JSONSerializer) for q in queue_names(settings.rq_queue)
    ]
    worker = RqpWorker(
        queues, name=name, connection=r, job_class=job_class, serializer=JSONSerializer, default_result_ttl=0
    )
    worker.processor = processor
    return worker


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="rqp-processor-worker", description="one rqp worker process (started by rqp-processor)"
    )
    ap.add_argument("--config")
    ap.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    ap.add_argument("--log-level", default=os.environ.get("RQP_LOG_LEVEL", "WARNING"))
    ap.add_argument("--parent", type=int, help="the supervisor's pid: exit when it is gone (set by rqp-processor)")
    args = ap.parse_args(argv)
    watch = None
    if args.parent is not None:
        die_with_parent(args.parent)  # first: the supervisor may already be gone
        watch = ParentWatch(args.parent).start()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    harden_process("rqp-processor worker")
    try:
        settings = Settings.load(args.config)
        worker = build_worker(settings)
    except RqpError as exc:
        print(f"rqp-processor: error: {exc}", file=sys.stderr)
        return exc.exit_code
    worker.parent_watch = watch
    try:
        worker.work(burst=args.burst, logging_level=args.log_level.upper(), with_scheduler=False)
    finally:
        # what waits is published while this interpreter can still start threads (the atexit
        # hook is only the last resort: by then concurrent.futures takes no new work)
        worker.processor.publisher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
