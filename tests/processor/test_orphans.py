"""Worker processes and their script hosts never outlive their ``rqp-processor`` (issue 18, bug 11).

The supervisor is SIGKILLed (as the OOM killer would) while a worker is busy in a slow script:
every worker and script host of it must be gone within seconds, also while Redis is down (the
workers are then in RQ's retry-with-backoff loop, or waiting on a commit that cannot happen).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from harness import Cluster, assert_processes_gone, rqp_processes
from redis_server import RedisServer

from rqp.identity import process_identity
from rqp.ledger import held_key

#: seconds the workers and script hosts get to be gone once their supervisor is
GONE_WITHIN = 5.0

SLOW = """
import time

def process(record):
    time.sleep(0.5)  # a while per record: the worker is busy in its script host when its supervisor dies
    return record["n"]
"""


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmd(p: psutil.Process) -> str:
    """Its command line, or "" for one that exited meanwhile (a script host being replaced)."""
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def _children(p: psutil.Process) -> list[psutil.Process]:
    try:
        return p.children()
    except psutil.Error:
        return []


def _tree(supervisor: subprocess.Popen) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """The supervisor's workers, and the workers' script hosts."""
    workers = [c for c in _children(psutil.Process(supervisor.pid)) if "rqp_processor.worker" in _cmd(c)]
    hosts = [h for w in workers for h in _children(w) if "_host.py" in _cmd(h)]
    return workers, hosts


def _busy_processor(cluster: Cluster, wid: str, workers: int = 2) -> tuple[subprocess.Popen, list, list]:
    """A processor whose workers hold chunks of a slow workload, their script hosts running."""
    data = cluster.write_data(f"{wid}.jsonl", ({"n": i} for i in range(200)))
    cluster.pack(wid, data, cluster.write_script(f"{wid}.py", SLOW))
    cluster.env.update(RQP_CHUNK_SIZE="20", RQP_ADAPTIVE_CHUNKS="false", RQP_LEASE_SECONDS="60")
    sup = cluster.start_processor(workers=workers)
    cluster.start_scheduler(wid)

    def busy() -> bool:
        ws, hs = _tree(sup)
        return (
            len(ws) == workers and all(cluster.r.exists(held_key(process_identity(w.pid))) for w in ws) and len(hs) >= 1
        )

    cluster.wait_for(busy, 60, "every worker to hold a chunk of the slow workload")
    workers_, hosts = _tree(sup)
    return sup, workers_, hosts


def _assert_gone(procs: list[psutil.Process], what: str, cluster: Cluster) -> float:
    t0 = time.monotonic()
    deadline = t0 + GONE_WITHIN
    while any(map(_alive, procs)):
        if time.monotonic() > deadline:
            left = [f"{p.pid} {_cmd(p)[:120]}" for p in procs if _alive(p)]
            for p in procs:
                if _alive(p):
                    p.kill()
            raise AssertionError(
                f"{what} still running {GONE_WITHIN}s after their supervisor died: {left}\n{cluster.logs()}"
            )
        time.sleep(0.05)
    return time.monotonic() - t0


def test_workers_and_script_hosts_die_with_a_killed_supervisor(cluster):
    sup, workers, hosts = _busy_processor(cluster, "orphan1")
    assert workers and hosts
    os.kill(sup.pid, signal.SIGKILL)  # the supervisor alone, as the OOM killer would
    sup.wait()
    _assert_gone(workers + hosts, "workers and script hosts", cluster)


def test_workers_and_script_hosts_die_with_a_killed_supervisor_while_redis_is_down(tmp_path, kek):
    server = RedisServer().start()
    cluster = Cluster(tmp_path / "c", server.url, kek[0])
    try:
        sup, workers, hosts = _busy_processor(cluster, "orphan2")
        server.stop(kill=True)  # Redis first: the workers lose it mid-chunk and start retrying
        time.sleep(1.5)  # long enough for a worker to finish its record and meet the dead Redis
        # whatever runs under the supervisor now (a worker that gave up may have been replaced)
        now = psutil.Process(sup.pid).children(recursive=True)
        assert any("rqp_processor.worker" in _cmd(p) for p in now)
        os.kill(sup.pid, signal.SIGKILL)
        sup.wait()
        _assert_gone(workers + hosts + now, "workers and script hosts", cluster)
    finally:
        try:
            cluster.stop(grace=2)
        finally:
            server.stop(kill=True)


def test_a_worker_whose_supervisor_died_before_it_armed_the_death_signal_exits_at_once(tmp_path):
    """The race: the supervisor dies between starting the worker and the worker's prctl. The
    worker is then some other process's child: it must notice and exit, before it connects."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that is certainly not the worker's parent
    t0 = time.monotonic()
    cp = subprocess.run(
        [sys.executable, "-P", "-m", "rqp_processor.worker", "--parent", str(gone.pid)],
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "RQP_REDIS_URL": "redis://127.0.0.1:1/0"},  # never reached
    )
    from rqp_processor.worker import EXIT_ORPHANED

    assert cp.returncode == EXIT_ORPHANED, cp.stderr.decode()[-2000:]
    assert b"is gone; exiting" in cp.stderr
    assert time.monotonic() - t0 < 30


def test_the_harness_fails_a_test_that_leaves_a_worker_behind(tmp_path, redis_url, kek, monkeypatch):
    """Cluster.stop's check: a process of the cluster still running after the stop fails it."""
    import harness

    monkeypatch.setattr(harness, "LEFTOVER_GRACE", 1.0)
    cluster = Cluster(tmp_path / "c", redis_url, kek[0])
    sup = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    cluster.procs.append(sup)
    # a stand-in for a worker of that supervisor that does not die with it (own session, so the
    # stop's signals to the supervisor's group miss it; it ignores SIGTERM)
    stray = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
            "rqp_processor.worker",
            "--parent",
            str(sup.pid),
        ],
        start_new_session=True,
    )
    try:
        # the process table is read while CI's other test processes start and end theirs: look
        # again until both are seen (one look missed the stray once, under a load average of 10)
        deadline = time.monotonic() + 10
        while {p.pid for p in rqp_processes(cluster.procs)} < {sup.pid, stray.pid} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {p.pid for p in rqp_processes(cluster.procs)} >= {sup.pid, stray.pid}
        with pytest.raises(AssertionError, match="still running"):
            cluster.stop(grace=1)
        stray.wait(5)  # the check kills what it reports
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


def test_assert_processes_gone_passes_when_everything_exited():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    procs = [psutil.Process(p.pid)]
    p.wait()
    assert_processes_gone(procs, timeout=1)


def test_parent_watch_tells_its_supervisor_from_another_process():
    from rqp_processor.worker import ParentWatch

    assert not ParentWatch(os.getppid()).gone()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert ParentWatch(gone.pid).gone()
