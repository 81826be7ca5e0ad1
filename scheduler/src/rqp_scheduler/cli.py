"""``rqp-scheduler``: supervise workloads to the end.

``rqp-scheduler run W [W ...]`` schedules the named workloads and exits when all are finished
(exit 0 if every record is done, 1 if some failed, and the error's own code -- ``rqp.errors``, e.g. 4
when the data does not authenticate -- when a workload failed as a whole, printed once);
``rqp-scheduler serve`` runs as a service,
resuming unfinished workloads after a restart and taking new ones submitted with ``rqp submit``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import redis

from rqp import sandbox
from rqp.config import Settings
from rqp.connect import connect_redis, open_blob_store, open_key_provider, open_message_queue, open_trust_store
from rqp.errors import RqpError
from rqp.hardening import harden_process
from rqp.ledger import next_submission, unfinished
from rqp.metrics_http import serve_scheduler
from rqp.status import read_progress

from .run import WorkloadRun

__all__ = ["Scheduler", "main"]

log = logging.getLogger("rqp.scheduler")
REDIS_RETRY_MAX = 10.0


class Scheduler:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.r = connect_redis(settings)
        self.store = open_blob_store(settings.blob_url, retry_seconds=settings.storage_retry_seconds)
        self.mq = open_message_queue(settings, self.r)
        self.keys = open_key_provider(settings)
        self.trust = open_trust_store(settings)
        self.sandbox = sandbox.SandboxConfig.from_settings(settings)
        #: what the script hosts of this host can apply (checked against RQP_REQUIRE_SANDBOX)
        self.protections = sandbox.probe(self.sandbox)
        #: script hosts for the workloads' import checks and parse(), one kept warm
        self.hosts = sandbox.HostFactory(self.sandbox)
        #: sends the enqueue transactions of every workload this scheduler runs
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rqp-enqueue")
        self.runs: dict[str, WorkloadRun] = {}
        self.stop = threading.Event()
        self.failures: dict[str, str] = {}
        #: the exit code of each workload's error (``rqp.errors``: 4 for data that does not authenticate)
        self.failure_codes: dict[str, int] = {}
        #: whether errors go to the log as they happen (serve); ``run`` prints each once, at the end
        self.serving = False

    def add(self, workload_id: str) -> None:
        if workload_id in self.runs:
            return
        run = WorkloadRun(
            self.settings, self.r, self.store, self.mq, self.keys, self.trust, workload_id, self.hosts, self.writer
        ).start()
        if run.finished:
            log.info("workload %s is already done; nothing to schedule", workload_id)
            return
        self.runs[workload_id] = run

    def resume_unfinished(self) -> None:
        for wid in unfinished(self.r):
            self._try_add(wid)

    def _try_add(self, wid: str) -> None:
        try:
            self.add(wid)
        except RqpError as exc:
            self._failed(wid, exc)

    def _failed(self, wid: str, exc: RqpError) -> None:
        self.failures[wid] = str(exc)
        self.failure_codes[wid] = exc.exit_code
        if self.serving:
            log.error("workload %s: %s", wid, exc)

    def loop(self, serve: bool = False) -> None:
        self.serving = serve
        backoff = 0.1
        while not self.stop.is_set() and (serve or self.runs):
            try:
                if serve:
                    while (sub := next_submission(self.r)) is not None:
                        self._try_add(sub)
                for wid, run in list(self.runs.items()):
                    try:
                        if run.step():
                            del self.runs[wid]
                    except RqpError as exc:
                        self._failed(wid, exc)
                        del self.runs[wid]
                backoff = 0.1
                hint = min((run.wait_hint() for run in self.runs.values()), default=1.0)
                self.stop.wait(hint)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("Redis unreachable (%s); retrying in %.1fs", str(exc).split("\n")[0], backoff)
                for run in self.runs.values():
                    run.reset_after_error()
                self.stop.wait(backoff)
                backoff = min(REDIS_RETRY_MAX, backoff * 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="rqp-scheduler", description="queue workloads' records in Redis and supervise them to the end"
    )
    ap.add_argument("--config", help="TOML settings file (else RQP_CONFIG / RQP_* environment)")
    ap.add_argument("--log-level", default=os.environ.get("RQP_LOG_LEVEL", "INFO"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    run_p = sub.add_parser("run", help="schedule workloads and exit when they are finished")
    run_p.add_argument("workloads", nargs="+")
    run_p.add_argument("--chunk-size", type=int)
    sub.add_parser("serve", help="run as a service: resume unfinished workloads, take new submissions")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s rqp-scheduler %(levelname)s %(message)s")
    harden_process("rqp-scheduler")
    try:
        settings = Settings.load(args.config, chunk_size=getattr(args, "chunk_size", None))
        sched = Scheduler(settings)
        # /metrics (RQP_METRICS_PORT): this scheduler's counters and the fleet's state in Redis
        served = serve_scheduler(settings, sched.r) if settings.metrics_port else None
    except RqpError as exc:
        print(f"rqp-scheduler: error: {exc}", file=sys.stderr)
        return exc.exit_code

    def on_signal(signum: int, _frame: object) -> None:
        sched.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("%s", sched.protections.describe())
    try:
        code = _run(args, settings, sched)
    finally:
        sched.hosts.close()  # no script host outlives the scheduler
        sched.writer.shutdown(wait=True)
        if served is not None:
            served.close()
    return code


def _run(args: argparse.Namespace, settings: Settings, sched: Scheduler) -> int:
    if args.cmd == "run":
        for wid in args.workloads:
            try:
                sched.add(wid)
            except RqpError as exc:
                print(f"rqp-scheduler: error: {exc}", file=sys.stderr)
                return exc.exit_code
        sched.loop()
    else:
        log.info("serving: Redis %s, blobs %s", settings.redis_url_safe, sched.store.location)
        sched.resume_unfinished()
        sched.loop(serve=True)
    if sched.stop.is_set():
        return 0 if args.cmd == "serve" else 130  # a service stopped on request exits cleanly
    failed = 0
    for wid in getattr(args, "workloads", []):
        if wid in sched.failures:
            print(f"rqp-scheduler: error: workload {wid}: {sched.failures[wid]}", file=sys.stderr)
            return sched.failure_codes.get(wid, 1)
        p = read_progress(sched.r, wid)
        if p is not None:
            print(
                f"rqp-scheduler: workload {wid}: {p.state}: {p.done} done, {p.failed} failed of {p.total}",
                file=sys.stderr,
            )
            failed += p.failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
