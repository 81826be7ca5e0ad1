"""Prometheus metrics: what the long-running roles count, and the ``/metrics`` endpoint they serve.

``RQP_METRICS_PORT`` (0: off, the default) and ``RQP_METRICS_BIND`` (127.0.0.1) choose where.

* **rqp-processor**: its worker processes count into prometheus_client's multiprocess files, in a
  private directory (0700) the supervisor creates under the temporary directory, names to its
  workers only (``PROMETHEUS_MULTIPROC_DIR`` in their environment, never in its own, never in a
  script host's: those get a fixed minimal environment) and removes when it exits. The supervisor
  serves their sum, its own counts (workers, restarts, leases it ended) and the queue's depth.
* **rqp-scheduler**: one process; serves its own counters and what Redis says about the fleet
  (workloads by state, the outbox's backlog, the queue's depth, chunks in flight).

What may appear: counts, durations, workload ids and workload states. Never a record, a result,
a key, or an error text (a user script's exception message is workload data): rejected jobs are
counted without a label, since what a forged job names is chosen by whoever wrote it.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client
import redis
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from .errors import ConfigError
from .ledger import OUTBOX_TIMES, WORKLOADS, Meta, WorkloadKeys

__all__ = [
    "CHUNKS_HANDED_BACK",
    "CHUNKS_LEASE_LOST",
    "CHUNKS_RECLAIMED",
    "CHUNK_SECONDS",
    "JOBS_REJECTED",
    "LEASE_RENEWALS",
    "LEASE_RENEWAL_ERRORS",
    "MULTIPROC_ENV",
    "RECORDS_DONE",
    "RECORDS_ENQUEUED",
    "RECORDS_FAILED",
    "RECORDS_RETRIED",
    "MetricsServer",
    "SupervisorCounts",
    "serve_processor",
    "serve_scheduler",
]

#: the variable prometheus_client's multiprocess mode reads (set for a processor's workers only)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# counters are exposed as NAME_total only, without a NAME_created series per label set
prometheus_client.disable_created_metrics()

# ------------------------------------------------------------------ a processor's workers
#: where the workers' metrics live; with MULTIPROC_ENV set (by rqp-processor) their values go to
#: per-process files the supervisor reads, so this registry is never served itself
_WORKER = CollectorRegistry(auto_describe=True)
RECORDS_DONE = Counter("rqp_records_done", "Records processed and committed done", ["workload"], registry=_WORKER)
RECORDS_FAILED = Counter(
    "rqp_records_failed", "Records failed for good (their attempts used up)", ["workload"], registry=_WORKER
)
RECORDS_RETRIED = Counter(
    "rqp_records_retried",
    "Record attempts that failed and were queued again with backoff",
    ["workload"],
    registry=_WORKER,
)
CHUNK_SECONDS = Histogram(
    "rqp_chunk_seconds",
    "Seconds from a worker taking a chunk to its commit",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=_WORKER,
)
LEASE_RENEWALS = Counter("rqp_lease_renewals", "Chunk leases renewed by a busy worker", registry=_WORKER)
LEASE_RENEWAL_ERRORS = Counter(
    "rqp_lease_renewal_errors", "Chunk lease renewals that failed (Redis unreachable)", registry=_WORKER
)
CHUNKS_LEASE_LOST = Counter(
    "rqp_chunks_lease_lost",
    "Chunks whose lease had expired when their worker committed (results discarded; the re-run counts)",
    registry=_WORKER,
)
JOBS_REJECTED = Counter(
    "rqp_jobs_rejected",
    "Jobs refused before any user code ran (forged, replayed, altered, unsigned or unknown workload)",
    registry=_WORKER,
)
CHUNKS_HANDED_BACK = Counter(
    "rqp_chunks_handed_back", "Chunks handed back because this processor cannot open their workload", registry=_WORKER
)

# ------------------------------------------------------------------ the scheduler
_SCHEDULER = CollectorRegistry(auto_describe=True)
RECORDS_ENQUEUED = Counter(
    "rqp_records_enqueued", "Records read from the data and queued in chunks", ["workload"], registry=_SCHEDULER
)
CHUNKS_RECLAIMED = Counter(
    "rqp_chunks_reclaimed",
    "Chunks re-run or failed by the scheduler: lease expired, worker died, or RQ job failed or lost",
    ["workload"],
    registry=_SCHEDULER,
)


# ------------------------------------------------------------------ read from Redis at scrape time
class _RedisGauges:
    """What Redis says, read when scraped: the RQ queue's length and, for the scheduler, chunks in
    flight per unfinished workload, workloads by state and the outbox's backlog. A processor asks
    only for the queue's length: its Redis user may not list the workloads (``rqp.redis_acl``)."""

    def __init__(self, r: redis.Redis, rq_queue: str, scheduler: bool) -> None:
        from rq import Queue  # noqa: PLC0415 - RQ's own key for the queue

        self.r = r
        self.queue_key = Queue(rq_queue, connection=r).key
        self.scheduler = scheduler

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("rqp_redis_up", "Whether Redis answered this scrape's queries (1) or not (0)")
        try:
            metrics = self._read()
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _read(self) -> list[Metric]:
        if not self.scheduler:
            depth = GaugeMetricFamily("rqp_queue_jobs", "Chunk jobs waiting in the RQ queue")
            depth.add_metric([], self.r.llen(self.queue_key))
            return [depth]
        pipe = self.r.pipeline(transaction=False)
        pipe.llen(self.queue_key)
        pipe.zrange(WORKLOADS, 0, -1)
        pipe.zcard(OUTBOX_TIMES)
        queued, ids, outbox = pipe.execute()
        ids = [w.decode(errors="replace") if isinstance(w, bytes) else str(w) for w in ids]
        pipe = self.r.pipeline(transaction=False)
        for wid in ids:
            pipe.hget(WorkloadKeys(wid).meta, Meta.STATE)
        states = [s.decode(errors="replace") if isinstance(s, bytes) else s for s in pipe.execute()] if ids else []
        active = [w for w, s in zip(ids, states, strict=True) if s and s not in ("done", "failed", "cancelled")]
        pipe = self.r.pipeline(transaction=False)
        for wid in active:
            pipe.zcard(WorkloadKeys(wid).pending)
            pipe.zcount(WorkloadKeys(wid).pending, "-inf", "(+inf")
        counts = pipe.execute() if active else []

        out: list[Metric] = []
        depth = GaugeMetricFamily("rqp_queue_jobs", "Chunk jobs waiting in the RQ queue")
        depth.add_metric([], queued)
        out.append(depth)
        flight = GaugeMetricFamily(
            "rqp_chunks_in_flight", "Chunks queued or running, per unfinished workload", labels=["workload"]
        )
        running = GaugeMetricFamily(
            "rqp_chunks_running", "Chunks a worker holds the lease of, per unfinished workload", labels=["workload"]
        )
        for i, wid in enumerate(active):
            flight.add_metric([wid], counts[2 * i])
            running.add_metric([wid], counts[2 * i + 1])
        out += [flight, running]
        if self.scheduler:
            by_state = GaugeMetricFamily("rqp_workloads", "Workloads by state", labels=["state"])
            tally: dict[str, int] = {}
            for s in states:
                if s:
                    tally[s] = tally.get(s, 0) + 1
            for state in sorted(tally):
                by_state.add_metric([state], tally[state])
            backlog = GaugeMetricFamily(
                "rqp_outbox_messages", "Status and event messages committed but not yet published"
            )
            backlog.add_metric([], outbox)
            out += [by_state, backlog]
        return out


# ------------------------------------------------------------------ the supervisor's own counts
@dataclass
class SupervisorCounts:
    """What an ``rqp-processor`` supervisor knows about its workers (updated by its loop)."""

    configured: int = 0
    live: int = 0
    restarts: int = 0
    leases_ended: int = 0


class _SupervisorCollector:
    def __init__(self, counts: SupervisorCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterable[Metric]:
        c = self.counts
        workers = GaugeMetricFamily("rqp_workers", "Worker processes of this processor that are running")
        workers.add_metric([], c.live)
        configured = GaugeMetricFamily("rqp_workers_configured", "Worker processes this processor keeps running")
        configured.add_metric([], c.configured)
        restarts = CounterMetricFamily("rqp_worker_restarts", "Worker processes that exited and were started again")
        restarts.add_metric([], c.restarts)
        ended = CounterMetricFamily(
            "rqp_worker_leases_ended", "Leases of dead workers' chunks ended by this processor, so they re-run at once"
        )
        ended.add_metric([], c.leases_ended)
        return [workers, configured, restarts, ended]


# ------------------------------------------------------------------ serving
class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class MetricsServer:
    """``/metrics`` over HTTP on a daemon thread; ``close()`` stops it and removes the private
    multiprocess directory, if any."""

    def __init__(self, registry: CollectorRegistry, bind: str, port: int, directory: str | None = None) -> None:
        self.directory = directory
        app = prometheus_client.make_wsgi_app(registry)

        def only_metrics(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/metrics":
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"not found: the metrics are at /metrics\n"]
            return app(environ, start_response)

        try:
            family = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
            server_class = type("_BoundServer", (_Server,), {"address_family": family})
            self.httpd: WSGIServer = make_server(bind, port, only_metrics, server_class, handler_class=_Quiet)
        except OSError as exc:
            self.remove_directory()
            raise ConfigError(
                f"cannot serve metrics on {bind}:{port} ({exc.strerror or exc}); "
                "choose another RQP_METRICS_PORT or RQP_METRICS_BIND, or 0 to turn metrics off"
            ) from None
        self.port: int = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="rqp-metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.remove_directory()

    def remove_directory(self) -> None:
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


def serve_processor(settings: Any, r: redis.Redis, counts: SupervisorCounts) -> tuple[MetricsServer, dict[str, str]]:
    """Serve a processor's metrics; returns the server and the environment its workers must be
    started with (this process's own, plus the private multiprocess directory)."""
    directory = tempfile.mkdtemp(prefix="rqp-metrics-")  # mode 0700, this user's only
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=directory)
    registry.register(_SupervisorCollector(counts))
    registry.register(_RedisGauges(r, settings.rq_queue, scheduler=False))
    server = MetricsServer(registry, settings.metrics_bind, settings.metrics_port, directory)
    return server, {**os.environ, MULTIPROC_ENV: directory}


def serve_scheduler(settings: Any, r: redis.Redis) -> MetricsServer:
    """Serve the scheduler's counters and the fleet's state as Redis holds it."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in (_SCHEDULER, _RedisGauges(r, settings.rq_queue, scheduler=True)):
        registry.register(collector)
    return MetricsServer(registry, settings.metrics_bind, settings.metrics_port)
