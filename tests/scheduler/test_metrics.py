"""``rqp-scheduler serve``'s Prometheus endpoint (issue 18): real processes and a real workload,
scraped over HTTP while it runs and after it finished, with a worker killed mid-chunk so that a
chunk is reclaimed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import psutil
from harness import Cluster, bin_path
from prometheus_client.parser import text_string_to_metric_families
from redis_server import free_port

N = 400
SCRIPT = """
import time

def process(record):
    time.sleep(0.01)
    return record["n"] * 2
"""


def _cmd(p: psutil.Process) -> str:
    """Its command line, or "" for one that exited meanwhile."""
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def test_scheduler_metrics_match_the_workload(cluster: Cluster):
    wid = "smetrics"
    data = cluster.write_data(f"{wid}.jsonl", ({"n": i, "note": f"record-text-{i}"} for i in range(N)))
    cluster.pack(wid, data, cluster.write_script(f"{wid}.py", SCRIPT))
    cluster.env.update(RQP_CHUNK_SIZE="20", RQP_ADAPTIVE_CHUNKS="false", RQP_LEASE_SECONDS="60")
    port = free_port()
    sched = subprocess.Popen(
        [bin_path("rqp-scheduler"), "serve"],
        env={**cluster.env, "RQP_METRICS_PORT": str(port)},
        cwd=cluster.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cluster.procs.append(sched)

    def serving() -> str | None:
        try:
            return scrape(port)
        except (urllib.error.URLError, OSError):
            return None

    cluster.wait_for(lambda: serving() is not None, 60, "the scheduler's /metrics")
    assert value(scrape(port), "rqp_redis_up") == 1
    sup = cluster.start_processor(1)
    cluster.rqp("submit", wid)

    # while it runs: chunks in flight for the workload, one of them held by the worker
    host = socket.gethostname()
    held: list[int] = []

    def busy() -> bool:
        ws = [c for c in psutil.Process(sup.pid).children() if "rqp_processor.worker" in _cmd(c)]
        held[:] = [w.pid for w in ws if cluster.r.exists(f"rqp:held:{host}:{w.pid}")]
        return bool(held)

    cluster.wait_for(busy, 60, "the worker to hold a chunk")
    text = scrape(port)
    assert (value(text, "rqp_chunks_in_flight", workload=wid) or 0) >= 1, text
    assert value(text, "rqp_workloads", state="running") == 1, text
    os.kill(held[0], signal.SIGKILL)  # its supervisor ends the lease; the scheduler reclaims the chunk

    cluster.wait_for(lambda: cluster.r.hget(f"rqp:w:{wid}:meta", "state") == b"done", 120, "the workload to finish")
    reclaimed = int(cluster.r.hget(f"rqp:w:{wid}:meta", "reclaimed") or 0)
    assert reclaimed >= 1

    def settled() -> str | None:
        text = scrape(port)
        return text if value(text, "rqp_workloads", state="done") == 1 else None

    cluster.wait_for(lambda: settled() is not None, 30, "the endpoint to show the workload done")
    text = scrape(port)
    assert value(text, "rqp_records_enqueued_total", workload=wid) == N
    assert value(text, "rqp_chunks_reclaimed_total", workload=wid) == reclaimed
    assert value(text, "rqp_workloads", state="done") == 1
    assert value(text, "rqp_workloads", state="running") is None
    assert value(text, "rqp_chunks_in_flight", workload=wid) is None  # finished workloads are not listed
    assert value(text, "rqp_queue_jobs") == 0
    assert value(text, "rqp_outbox_messages") is not None
    assert "record-text" not in text

    results = cluster.results(wid)
    assert sorted(results) == list(range(N)) and all(results[i] == 2 * i for i in range(N))
