"""``rqp-processor``: M worker processes on this host, kept alive, stopped gracefully.

SIGTERM/SIGINT (``docker compose stop``, scale-down) and an eviction notice for this VM (Azure
Scheduled Events, ``evictions``; off unless ``RQP_SCHEDULED_EVENTS_URL`` is set) drain the
processor (``drain``): every worker finishes the chunk in hand and exits (RQ's warm shutdown); a
worker still busy at the deadline (the grace period, or the eviction's NotBefore less
``RQP_DRAIN_MARGIN_SECONDS``) is stopped and its chunk handed back at once, re-run elsewhere with
no attempt spent -- never half-committed, since a chunk's commit is one atomic Redis script. An
eviction is acknowledged (``StartRequests``) once drained. A worker that dies (OOM killer, SIGKILL, a crash) has its chunk's lease ended
by this supervisor at once, so the scheduler re-runs the chunk within a second instead of after
the lease (``RQP_LEASE_SECONDS``) runs out. The RQ registrations dead workers of this host left
behind (a kill, a crash, a reboot) are removed when it starts and when it restarts a worker
(``registrations``), so the console does not list them for minutes.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import redis

from rqp import sandbox
from rqp.backends import Backends
from rqp.config import Settings
from rqp.errors import RqpError
from rqp.hardening import harden_process
from rqp.identity import process_identity
from rqp.ledger import FleetHeartbeat, release_worker
from rqp.metrics_http import SupervisorCounts, serve_processor
from rqp.vms import record_vm

from .drain import DrainReport, drain_workers
from .evictions import EvictionWatcher, Notice, vm_label
from .registrations import remove_dead_registrations

if TYPE_CHECKING:  # an optional package: imported only when --report-host asks for it
    from rqp_metrics.logger import MetricsLogger

__all__ = ["DEFAULT_GRACE_SECONDS", "RESTART_BACKOFF_MAX", "main", "release_dead_worker"]

log = logging.getLogger("rqp.processor")
DEFAULT_GRACE_SECONDS = 25.0
RESTART_BACKOFF_MAX = 30.0
HEALTHY_SECONDS = 60.0


def _spawn(args: argparse.Namespace, env: dict[str, str] | None = None) -> subprocess.Popen:
    # -P: the working directory is not put on sys.path, so a stray file cannot shadow a module.
    # --parent: the worker dies with this process (PR_SET_PDEATHSIG, armed for the *thread* that
    # forks it: always call this from the main thread) and checks that it is still its parent
    cmd = [
        sys.executable,
        "-P",
        "-m",
        "rqp_processor.worker",
        "--log-level",
        args.log_level,
        "--parent",
        str(os.getpid()),
    ]
    if args.config:
        cmd += ["--config", args.config]
    if args.burst:
        cmd.append("--burst")
    return subprocess.Popen(cmd, env=env)


def release_previous_holder(r: redis.Redis, pid: int) -> None:
    """A worker just started as ``pid``: a chunk still held under ``host:pid`` is a dead process's
    (the same pid before a container restart or a reboot, or one killed with its supervisor). Its
    lease ends now, said as what it is, so the new worker is never blamed for it should it die."""
    if jid := release_dead_worker(r, pid):
        log.warning("an earlier process with pid %d on this host died holding %s; its lease was ended", pid, jid)


def release_dead_worker(r: redis.Redis, pid: int) -> str | None:
    """End the lease of the chunk a dead worker of this host held, so the scheduler re-runs it
    now. Best effort: if Redis cannot be reached the lease still runs out by itself."""
    try:
        return release_worker(r, process_identity(pid))
    except redis.RedisError as exc:
        log.warning("could not release the chunk of dead worker pid %d (%s); its lease will run out", pid, exc)
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rqp-processor", description="run rqp worker processes on this host")
    ap.add_argument("--config", help="TOML settings file (else RQP_CONFIG / RQP_* environment)")
    ap.add_argument("--workers", "-w", type=int, help="worker processes (default: RQP_WORKERS or the CPU count)")
    ap.add_argument("--burst", action="store_true", help="workers exit once the queue is empty")
    ap.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help="seconds a worker may take to finish its chunk on shutdown",
    )
    ap.add_argument("--log-level", default=os.environ.get("RQP_LOG_LEVEL", "WARNING"))
    ap.add_argument(
        "--report-host",
        type=float,
        metavar="SECONDS",
        help="also record this host's CPU, disk and network every SECONDS (needs rqp-metrics-logger)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s rqp-processor %(levelname)s %(message)s")
    harden_process("rqp-processor")
    try:
        settings = Settings.load(args.config, workers=args.workers)
        # fail fast, in one line, on what every worker would fail on (the blob store and message
        # queue are the workers' own: they ride out a blob-store outage, this process never needs it)
        backends = Backends(settings)
        r, _keys, _trust = backends.redis, backends.keys, backends.trust
        protections = sandbox.probe(sandbox.SandboxConfig.from_settings(settings))
        metrics = _start_host_metrics(args) if args.report_host else None
        # /metrics (RQP_METRICS_PORT): the workers count into a private directory named in their
        # environment only; this process serves the sum
        counts = SupervisorCounts(configured=settings.worker_count)
        served, worker_env = serve_processor(settings, r, counts) if settings.metrics_port else (None, None)
        if served is not None:
            atexit.register(served.remove_directory)
    except RqpError as exc:
        print(f"rqp-processor: error: {exc}", file=sys.stderr)
        return exc.exit_code
    n = settings.worker_count
    remove_dead_registrations(r)  # what this host's workers left before a kill, a crash, a reboot
    procs = [_spawn(args, worker_env) for _ in range(n)]
    for p in procs:
        release_previous_holder(r, p.pid)
    print(
        f"rqp-processor: {n} worker processes on queue {settings.rq_queue!r} ({settings.redis_url_safe})",
        file=sys.stderr,
        flush=True,
    )
    print(f"rqp-processor: {protections.describe()}", file=sys.stderr, flush=True)
    # what this host runs and how its scripts are confined, for the console (best effort)
    heartbeat = FleetHeartbeat(r, socket.gethostname(), os.getpid(), protections.describe(), n)
    vm = vm_label(settings)  # which VM, and Spot or not: for the summary's cost by VM (rqp.vms)
    if vm is not None:
        record_vm(r, socket.gethostname(), vm)
        print(f"rqp-processor: on VM {vm.vm} ({vm.priority or 'priority unknown'})", file=sys.stderr, flush=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # an eviction notice for this VM (off unless RQP_SCHEDULED_EVENTS_URL is set): drain as for SIGTERM
    notices: list[Notice] = []

    def on_notice(notice: Notice) -> None:
        notices.append(notice)
        print(
            f"rqp-processor: eviction notice {notice.event_id} ({notice.event_type}) for this VM, not before "
            f"{notice.not_before - time.time():.1f}s from now; draining",
            file=sys.stderr,
            flush=True,
        )
        stop.set()

    watcher = EvictionWatcher.from_settings(settings, on_notice, vm.vm if vm is not None else None)
    if watcher is not None:
        watcher.start()
    restarts = [0] * n
    started = [time.monotonic()] * n
    while not stop.is_set():
        heartbeat.beat()
        counts.live = sum(p.poll() is None for p in procs)
        for i, p in enumerate(procs):
            code = p.poll()
            if code is None:
                continue
            if args.burst and code == 0:
                continue
            sandbox.remove_leftovers(pid=p.pid)  # what its script hosts wrote, should it have been SIGKILLed
            if code != 0 and (jid := release_dead_worker(r, p.pid)):
                counts.leases_ended += 1
                log.warning(
                    "worker %d (pid %d) died holding %s; its lease was ended so the chunk is re-run now", i, p.pid, jid
                )
            # configuration or key errors (exit 2, 3): restarting will not help soon. Redis
            # unreachable (exit 6) is often a failover a few seconds long (Sentinel promoting a
            # replica): backed off like a crash, so the worker is back seconds after Redis is
            delay = RESTART_BACKOFF_MAX if code in (2, 3) else min(RESTART_BACKOFF_MAX, 0.5 * 2 ** restarts[i])
            if time.monotonic() - started[i] > HEALTHY_SECONDS:
                restarts[i] = 0  # it ran fine for a while: this is a new incident, not a crash loop
                delay = 0.5 if code not in (2, 3) else delay
            log.warning("worker %d (pid %d) exited with %s; restarting in %.1fs", i, p.pid, code, delay)
            restarts[i] += 1
            counts.restarts += 1
            if not stop.wait(delay):
                remove_dead_registrations(r)  # the one that died, when it could not unregister
                procs[i] = _spawn(args, worker_env)
                release_previous_holder(r, procs[i].pid)
                started[i] = time.monotonic()
        if args.burst and all(p.poll() is not None for p in procs):
            break
        stop.wait(0.5)
    if watcher is not None:
        watcher.stop()
    notice = notices[0] if notices else None
    if notice is not None:
        # drained before NotBefore less the margin: what cannot finish by then is handed back
        left = notice.not_before - settings.drain_margin_seconds - time.time()
        deadline, why = time.monotonic() + max(0.0, left), f"before the eviction ({notice.event_type})"
    else:
        deadline, why = time.monotonic() + args.grace, f"within {args.grace:g}s"
    report = drain_workers(r, procs, deadline, why)
    if report.killed:
        remove_dead_registrations(r)  # a worker killed above could not unregister itself
    heartbeat.leave()
    if notice is not None:
        _acknowledge(watcher, notice, report)  # last: the platform may take the VM away at once
    if metrics is not None:
        metrics.stop()
    if served is not None:
        served.close()
    return 0


def _acknowledge(watcher: EvictionWatcher | None, notice: Notice, report: DrainReport) -> None:
    """Drained: tell the platform it may go ahead now (``StartRequests``) instead of at NotBefore."""
    handed = f"{len(report.handed_back)} chunk(s) handed back" if report.handed_back else "no chunk handed back"
    print(f"rqp-processor: drained in {report.seconds:.1f}s ({handed})", file=sys.stderr, flush=True)
    if watcher is None:
        return
    try:
        watcher.events.acknowledge(notice.event_id)
    except (OSError, ValueError) as exc:
        log.warning(
            "could not acknowledge eviction %s (%s); the platform goes ahead at NotBefore", notice.event_id, exc
        )
        return
    print(f"rqp-processor: acknowledged eviction {notice.event_id}", file=sys.stderr, flush=True)


def _start_host_metrics(args: argparse.Namespace) -> MetricsLogger:
    """Report this processor host's own metrics from the supervisor, no VM extension needed."""
    try:
        from rqp_metrics.cli import build_logger  # noqa: PLC0415 - optional package
    except ImportError:
        raise SystemExit(
            "rqp-processor: error: --report-host needs the rqp-metrics-logger package; pip install ./metrics-logger"
        ) from None
    ns = argparse.Namespace(
        config=args.config, blob_url=None, interval=args.report_host, source="host", host_name=None, no_publish=False
    )
    logger, _ = build_logger(ns)
    logger.start_background(args.report_host)
    return logger


if __name__ == "__main__":
    sys.exit(main())
