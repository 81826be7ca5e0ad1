"""Run real rqp processes against real servers, for end-to-end and fault tests.

``Cluster`` owns an environment (Redis URL, blob store, KEK) and starts the real command-line
programs as subprocesses: ``rqp pack``, ``rqp-processor``, ``rqp-scheduler``. Every process it
starts it stops, even when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis

BIN = Path(sys.executable).parent
DEFAULT_TIMEOUT = 120.0


def bin_path(name: str) -> str:
    return str(BIN / name)


def make_signer(directory: Path, name: str = "signer") -> tuple[Path, Path]:
    """A submitter's Ed25519 key and a trusted-signers file holding its public half."""
    from rqp.signing import generate_signing_key

    directory.mkdir(parents=True, exist_ok=True)
    key = directory / f"{name}.pem"
    if not key.exists():
        generate_signing_key(key, directory / f"{name}.pub.pem")
    trusted = directory / f"trusted-{name}.pem"
    trusted.write_bytes((directory / f"{name}.pub.pem").read_bytes())
    return key, trusted


class Cluster:
    def __init__(
        self,
        root: Path,
        redis_url: str,
        kek: Path,
        *,
        blob_url: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.kek = kek
        self.signing_key, self.trusted_signers = make_signer(self.root / "signer")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RQP_")},
            "RQP_REDIS_URL": redis_url,
            "RQP_BLOB_URL": blob_url or f"file://{self.root / 'blobs'}",
            "RQP_KEK_FILE": str(kek),
            "RQP_SIGNING_KEY_FILE": str(self.signing_key),
            "RQP_TRUSTED_SIGNERS_FILE": str(self.trusted_signers),
            "RQP_LEASE_SECONDS": "5",
            "RQP_RETRY_BACKOFF": "0.05",
            "RQP_RETRY_BACKOFF_MAX": "0.2",
            "PYTHONUNBUFFERED": "1",
            # the test servers have no password; tests of the refusal set this to false
            "RQP_ALLOW_INSECURE_REDIS": "true",
            **(extra_env or {}),
        }
        self.procs: list[subprocess.Popen] = []
        self.processors: list[subprocess.Popen] = []
        self.r = redis.Redis.from_url(redis_url)

    # ------------------------------------------------------------------ commands
    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        env: dict[str, str] | None = None,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess:
        cp = subprocess.run(
            list(args),
            env={**self.env, **(env or {})},
            capture_output=True,
            timeout=timeout,
            cwd=self.root,
            input=input,
        )
        if check and cp.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {cp.returncode}\nstdout: {cp.stdout.decode()[-2000:]}\nstderr: {cp.stderr.decode()[-4000:]}"
            )
        return cp

    def rqp(self, *args: str, **kw: Any) -> subprocess.CompletedProcess:
        return self.run(bin_path("rqp"), *args, **kw)

    def write_data(self, name: str, records: Iterable[Any] | bytes) -> Path:
        path = self.root / name
        if isinstance(records, bytes):
            path.write_bytes(records)
        else:
            with open(path, "w") as fh:
                for rec in records:
                    fh.write(json.dumps(rec) + "\n")
        return path

    def write_script(self, name: str, source: str) -> Path:
        path = self.root / name
        path.write_text(source)
        return path

    def pack(self, workload: str, data: Path, script: Path, *extra: str) -> str:
        self.rqp("pack", str(data), str(script), "--id", workload, *extra)
        return workload

    # ------------------------------------------------------------------ roles
    def start_processor(self, workers: int = 2, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.root / f"processor-{len(self.procs)}.log", "wb") as log:  # the child keeps its own descriptor
            p = subprocess.Popen(
                [bin_path("rqp-processor"), "--workers", str(workers), *extra],
                env={**self.env, **(env or {})},
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(p)
        self.processors.append(p)
        return p

    def start_scheduler(self, *workloads: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        p = subprocess.Popen(
            [bin_path("rqp-scheduler"), "run", *workloads],
            env={**self.env, **(env or {})},
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def schedule(
        self, *workloads: str, timeout: float = DEFAULT_TIMEOUT, env: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Run the scheduler to the end; returns (exit code, its output)."""
        p = self.start_scheduler(*workloads, env=env)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            raise AssertionError(
                f"scheduler did not finish in {timeout}s:\n{out.decode()[-4000:]}\n{self.logs()}"
            ) from None
        return p.returncode, out.decode()

    def worker_pids(self) -> list[int]:
        """PIDs of the worker processes (children of the processor supervisors; their script
        hosts are the workers' children)."""
        pids = []
        for p in self.processors:
            try:
                out = subprocess.run(
                    ["pgrep", "-P", str(p.pid), "-f", "rqp_processor.worker"], capture_output=True, text=True
                ).stdout
            except FileNotFoundError:
                out = ""
            pids += [int(x) for x in out.split()]
        return pids

    def logs(self) -> str:
        out = []
        for f in sorted(self.root.glob("processor-*.log")):
            out.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    # ------------------------------------------------------------------ reading back
    def results(self, workload: str) -> dict[int, Any]:
        cp = self.rqp("results", workload)
        out: dict[int, Any] = {}
        for line in cp.stdout.decode().splitlines():
            doc = json.loads(line)
            assert doc["id"] not in out, f"record {doc['id']} appears twice in the results"
            out[doc["id"]] = doc["result"]
        return out

    def failures(self, workload: str) -> dict[int, dict[str, Any]]:
        cp = self.rqp("results", workload, "--failed")
        return {d["id"]: d for d in map(json.loads, cp.stdout.decode().splitlines())}

    def status(self, workload: str) -> dict[str, Any]:
        """``rqp status --json``; a workload submitted but not started yet (exit 7, nothing on
        stdout) reads as ``{"state": None, "error": ...}`` so a wait can go on polling it."""
        cp = self.rqp("status", workload, "--json", check=False)
        if not cp.stdout.strip():
            return {"state": None, "error": cp.stderr.decode(errors="replace").strip(), "exit": cp.returncode}
        return json.loads(cp.stdout)

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "condition") -> None:
        """Poll a condition with a deadline (the thing waited on is real state, not time)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")
            time.sleep(0.05)

    # ------------------------------------------------------------------ teardown
    def stop(self, grace: float = 10.0) -> None:
        started = rqp_processes(self.procs)  # supervisors, workers, script hosts, orphans of this cluster
        stop_process_groups(self.procs, grace)
        self.procs.clear()
        self.processors.clear()
        self.r.close()
        assert_processes_gone(started)


def stop_process_groups(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    """SIGTERM each process's group (each was started in its own session, so its children go
    too), then SIGKILL what is still running after ``grace`` seconds."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


# ---------------------------------------------------------------------- nothing left behind
#: seconds a stopped cluster's processes get to be gone (death signals are asynchronous)
LEFTOVER_GRACE = 10.0


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def rqp_processes(procs: Iterable[subprocess.Popen]) -> list[Any]:
    """Every process these roles started, as ``psutil.Process`` objects (which remember their
    start time, so a reused pid is never mistaken for one of them): the processes themselves and
    all their descendants (workers, script hosts), and workers left behind by a supervisor that
    is already gone (a worker names its supervisor in ``--parent``) with their script hosts."""
    import psutil

    procs = list(procs)
    found: dict[int, Any] = {}
    for p in procs:
        for q in _descendants(p.pid):
            found[q.pid] = q
    parents = {str(p.pid) for p in procs}
    for q in psutil.process_iter(["cmdline"]):
        cmd = q.info.get("cmdline") or []
        if "rqp_processor.worker" in cmd and "--parent" in cmd:
            i = cmd.index("--parent")
            if i + 1 < len(cmd) and cmd[i + 1] in parents:
                for d in _descendants(q.pid):
                    found[d.pid] = d
    return list(found.values())


def _running(proc: Any) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def assert_processes_gone(procs: list[Any], timeout: float | None = None) -> None:
    """Fail if any of ``procs`` is still running ``timeout`` seconds (``LEFTOVER_GRACE``) from now,
    killing it, so one test's leftovers do not disturb the next."""
    import psutil

    timeout = LEFTOVER_GRACE if timeout is None else timeout
    deadline = time.monotonic() + timeout
    left = [p for p in procs if _running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if _running(p)]
    if not left:
        return
    described = []
    for p in left:
        try:
            described.append(f"pid {p.pid} (parent {p.ppid()}): {' '.join(p.cmdline())[:200]}")
            p.kill()
        except psutil.Error:  # gone meanwhile
            continue
    if described:
        raise AssertionError(
            f"{len(described)} rqp process(es) still running {timeout:.0f}s after the cluster stopped:\n"
            + "\n".join(described)
        )
