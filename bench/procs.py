"""Process helpers for the benchmark: start, stop, CPU accounting and RSS sampling.

Every process the benchmark starts gets its own session (process group), so stopping it stops
its children too; nothing is ever stopped by name.
"""

from __future__ import annotations

import resource
import subprocess
import threading
from pathlib import Path

import psutil
from harness import stop_process_groups  # tests/harness.py: the test suite's own process-group stop

STOP_GRACE = 10.0


def start(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )


def stop(procs: list[subprocess.Popen], grace: float = STOP_GRACE) -> None:
    stop_process_groups(procs, grace)


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU of the process trees rooted at ``pids``, including reaped children."""
    total = 0.0
    for pid in pids:
        for p in tree(pid):
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system + t.children_user + t.children_system
    return total


def cpu_seconds_matching(pids: list[int], needle: str) -> float:
    """CPU of the live processes in those trees whose command line contains ``needle`` (the
    script hosts under rqp's workers)."""
    total = 0.0
    for pid in pids:
        for p in tree(pid):
            try:
                if any(needle in part for part in p.cmdline()):
                    t = p.cpu_times()
                    total += t.user + t.system
            except psutil.NoSuchProcess:
                continue
    return total


def pids_matching(pids: list[int], needle: str) -> set[int]:
    """The live processes in those trees whose command line contains ``needle``."""
    out: set[int] = set()
    for pid in pids:
        for p in tree(pid):
            try:
                if any(needle in part for part in p.cmdline()):
                    out.add(p.pid)
            except psutil.NoSuchProcess:
                continue
    return out


def own_cpu(pids: set[int]) -> float:
    """User+system CPU of exactly these live processes (not their children)."""
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def children_cpu() -> float:
    """CPU of this process's waited-for children (e.g. a scheduler run with subprocess.run)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def peak_rss_kb(pid: int) -> int | None:
    """The kernel's high-water mark of a live process's resident set (VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """Samples the RSS of every child of ``root`` (the worker processes of a supervisor)."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.root = root
        self.interval = interval
        self.peak: dict[int, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for p in tree(self.root)[1:]:
                try:
                    rss = p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                if rss > self.peak.get(p.pid, 0):
                    self.peak[p.pid] = rss
            self._halt.wait(self.interval)

    def stop(self) -> dict[int, int]:
        self._halt.set()
        self.join()
        return self.peak
