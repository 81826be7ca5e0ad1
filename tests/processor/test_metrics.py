"""``rqp-processor``'s Prometheus endpoint (issue 18): real processes, a real workload, scraped
over HTTP. The counters match the workload; the endpoint holds no record, result or error text;
the workers' multiprocess directory is private and removed; the script hosts never see it."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import tempfile
import urllib.error
import urllib.request
import zlib
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from harness import Cluster, bin_path
from prometheus_client.parser import text_string_to_metric_families
from redis_server import free_port

N = 300
FAILING = {n for n in range(N) if n % 50 == 7}  # 6 records that raise on every attempt
SCRIPT = """
def process(record):
    if record["n"] % 50 == 7:
        raise ValueError("script-error-text-" + record["secret"])
    return {"n": record["n"], "echo": record["secret"]}
"""


def _cmd(p: psutil.Process) -> str:
    """Its command line, or "" for one that exited meanwhile."""
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def forge_job(r, jid: str) -> None:
    """A job written straight into Redis naming a function that is not rqp's entry point."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data = json.dumps(["os.system", None, ["echo forged"], {}]).encode()
    pipe = r.pipeline(transaction=True)
    pipe.hset(
        f"rq:job:{jid}",
        mapping={
            "data": zlib.compress(data),
            "status": "queued",
            "origin": "rqp",
            "created_at": now,
            "enqueued_at": now,
            "description": "not from rqp",
            "timeout": "60",
        },
    )
    pipe.sadd("rq:queues", "rq:queue:rqp")
    pipe.rpush("rq:queue:rqp", jid)
    pipe.execute()


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def test_processor_metrics_match_the_workload(cluster: Cluster):
    wid = "metrics1"
    secret = "plaintext-marker-5f1c"
    data = cluster.write_data(f"{wid}.jsonl", ({"n": i, "secret": f"{secret}-{i}"} for i in range(N)))
    cluster.pack(wid, data, cluster.write_script(f"{wid}.py", SCRIPT))
    cluster.env.update(RQP_MAX_ATTEMPTS="2", RQP_CHUNK_SIZE="50", RQP_ADAPTIVE_CHUNKS="false")
    port = free_port()
    sup = cluster.start_processor(2, env={"RQP_METRICS_PORT": str(port)})

    def up() -> bool:
        try:
            return value(scrape(port), "rqp_workers") == 2
        except (urllib.error.URLError, OSError):
            return False

    cluster.wait_for(up, 60, "the processor's /metrics with 2 workers")
    forge_job(cluster.r, "forged-metrics-1")
    cluster.wait_for(lambda: cluster.r.llen("rqp:rejected") >= 1, 60, "the forged job to be rejected")

    # the workers' private multiprocess directory: 0700, named in the workers' environment only
    workers = [c for c in psutil.Process(sup.pid).children() if "rqp_processor.worker" in _cmd(c)]
    assert len(workers) == 2
    directory = _environ(workers[0].pid)["PROMETHEUS_MULTIPROC_DIR"]
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert "PROMETHEUS_MULTIPROC_DIR" not in _environ(sup.pid)

    code, out = cluster.schedule(wid)
    assert code == 1, out  # some records failed for good
    # the script hosts (alive between chunks: warm, and the spare) have their fixed environment
    hosts = [h for w in workers for h in w.children() if "_host.py" in _cmd(h)]
    assert hosts
    for h in hosts:
        assert not any(k.startswith("PROMETHEUS") or k.startswith("RQP_") for k in _environ(h.pid)), _environ(h.pid)

    text = scrape(port)
    assert value(text, "rqp_records_done_total", workload=wid) == N - len(FAILING)
    assert value(text, "rqp_records_failed_total", workload=wid) == len(FAILING)
    assert value(text, "rqp_records_retried_total", workload=wid) == len(FAILING)  # 2 attempts: 1 retry each
    assert value(text, "rqp_jobs_rejected_total") == cluster.r.llen("rqp:rejected") == 1
    assert value(text, "rqp_chunk_seconds_count") >= N // 50
    assert value(text, "rqp_chunk_seconds_bucket", le="+Inf") == value(text, "rqp_chunk_seconds_count")
    assert value(text, "rqp_workers") == 2
    assert value(text, "rqp_workers_configured") == 2
    assert value(text, "rqp_queue_jobs") == 0
    assert value(text, "rqp_redis_up") == 1
    assert ("rqp_lease_renewals_total", ()) in samples(text)

    # nothing of the workload's data, results or the script's error text; no key material
    for leak in (
        secret,
        "script-error-text",
        "ValueError",
        "BEGIN",
        "PRIVATE",
        "os.system",
        "forged-metrics-1",
        "echo",
    ):
        assert leak not in text, leak
    labels = {k for (_, ls) in samples(text) for k, _ in ls}
    assert labels <= {"workload", "le"}, labels

    with pytest.raises(urllib.error.HTTPError) as err:
        scrape(port, "/")
    assert err.value.code == 404

    # stopped as 'docker compose stop' does: SIGTERM to the supervisor, which stops its workers and
    # removes the directory on its way out. (cluster.stop() SIGKILLs what is still running after
    # 10 s: on a busy machine that was the supervisor itself, whose cleanup then never ran --
    # issue #24 item 22.) So wait for it to exit by itself, then look.
    sup.send_signal(signal.SIGTERM)
    try:
        code = sup.wait(120)  # a bound on a hang, not a guess at how long stopping takes
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the supervisor did not exit within 120 s of SIGTERM\n{cluster.logs()}") from None
    assert code == 0, f"the supervisor did not exit cleanly ({code})\n{cluster.logs()}"
    assert not os.path.exists(directory), "the multiprocess directory outlived its supervisor"


def test_metrics_are_off_by_default_and_a_taken_port_is_one_clear_error(cluster: Cluster):
    sup = cluster.start_processor(1)
    cluster.wait_for(lambda: cluster.r.scard("rq:workers") >= 1, 60, "the worker")
    workers = [c for c in psutil.Process(sup.pid).children() if "rqp_processor.worker" in _cmd(c)]
    assert workers and "PROMETHEUS_MULTIPROC_DIR" not in _environ(workers[0].pid)

    tmp = Path(tempfile.gettempdir())
    before = set(tmp.glob("rqp-metrics-*"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cp = cluster.run(
            bin_path("rqp-processor"), "--workers", "1", env={"RQP_METRICS_PORT": str(port)}, check=False, timeout=60
        )
    assert cp.returncode == 2, cp.stderr.decode()
    err = cp.stderr.decode()
    assert f"rqp-processor: error: cannot serve metrics on 127.0.0.1:{port}" in err and "Traceback" not in err, err
    assert set(tmp.glob("rqp-metrics-*")) <= before, "the refused start left its metrics directory behind"
