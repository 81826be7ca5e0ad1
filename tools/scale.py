"""`make scale`: one Redis feeding a fleet -- 10,000,000 small records through the real programs.

Generates the records streaming (~100 bytes each, never all in memory), packs them, runs
`rqp-scheduler run` against 2 `rqp-processor` processes (one worker each) and one Redis with
AOF (every write kept: automatic rewrites off, so the file's size is what was written), and
prints what the fleet's ceiling depends on:

  records/s end to end, Redis CPU µs per record (INFO cpu), Redis peak and retained memory
  (INFO memory: peak during the run, and what the finished workload leaves until its status
  TTL), AOF bytes per record and beyond the records' own sealed bytes, and the peak RSS of the
  scheduler, the processors' workers and their script processes.

    python tools/scale.py                      # 10,000,000 records
    python tools/scale.py --records 1000000    # a shorter run
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples")]
from harness import stop_process_groups  # noqa: E402
from redis_server import RedisServer  # noqa: E402

BIN = Path(sys.executable).parent
SCRIPT = "def process(record):\n    return record['n'] + len(record['pad'])\n"
SEALED_OVERHEAD = 28 + 8  # nonce and tag, and the packed (id, length) header of each record


def generate(path: Path, n: int, size: int) -> int:
    """n JSON lines of about ``size`` bytes, written in batches; returns the file's size."""
    pad = "x" * max(1, size - 30)
    batch = 100_000
    with open(path, "w") as fh:
        for start in range(0, n, batch):
            fh.write("".join(f'{{"n": {i}, "pad": "{pad}"}}\n' for i in range(start, min(n, start + batch))))
    return path.stat().st_size


class Sampler(threading.Thread):
    """Peak Redis memory and the peak RSS of every process of the fleet, every 0.2 s."""

    def __init__(self, r, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.r = r
        self.pids = pids
        self.redis_peak = 0
        self.rss: dict[str, int] = {}
        self.stop = threading.Event()

    def sample(self) -> None:
        self.redis_peak = max(self.redis_peak, int(self.r.info("memory")["used_memory"]))
        for role, pid in list(self.pids.items()):
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for p in procs:
                try:
                    self.rss[_kind(p.cmdline(), role)] = max(
                        self.rss.get(_kind(p.cmdline(), role), 0), p.memory_info().rss
                    )
                except psutil.NoSuchProcess:
                    continue

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                self.sample()
            except Exception:
                continue


def _kind(cmdline: list[str], role: str) -> str:
    text = " ".join(cmdline)
    if "_host.py" in text:
        return "script processes"
    if "rqp_processor.worker" in text:
        return "processor workers"
    return "processor supervisors" if role.startswith("processor") else role


def redis_cpu(r) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def aof_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*.aof") if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--record-bytes", type=int, default=100)
    ap.add_argument("--processors", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    n = args.records
    work = Path(tempfile.mkdtemp(prefix="rqp-scale-"))
    password = secrets.token_urlsafe(24)
    (work / "redis").mkdir()
    server = RedisServer(
        appendonly=True, password=password, dir=str(work / "redis"),
        extra=["--auto-aof-rewrite-percentage", "0", "--appendfsync", "everysec"],
    ).start()  # fmt: skip
    pw = work / "redis-password"
    pw.write_text(password)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RQP_")},
        "RQP_REDIS_URL": server.url,
        "RQP_REDIS_PASSWORD_FILE": str(pw),
        "RQP_BLOB_URL": f"file://{work / 'blobs'}",
        "RQP_KEK_FILE": str(work / "kek.pem"),
        "RQP_SIGNING_KEY_FILE": str(work / "signer.pem"),
        "RQP_TRUSTED_SIGNERS_FILE": str(work / "signer.pub.pem"),
        "RQP_LOG_LEVEL": "WARNING",
    }
    running: list[subprocess.Popen] = []
    r = server.client()
    try:
        for cmd in (
            ["keygen", "--out", env["RQP_KEK_FILE"]],
            ["keygen", "--signing", "--out", env["RQP_SIGNING_KEY_FILE"]],
        ):
            subprocess.run([str(BIN / "rqp"), *cmd], env=env, check=True, capture_output=True)
        t = time.monotonic()
        size = generate(work / "data.jsonl", n, args.record_bytes)
        sealed = size / n - 1 + SEALED_OVERHEAD  # a record as Redis holds it: the line, sealed and packed
        print(
            f"scale: {n:,} records, {size / 1e6:,.0f} MB generated in {time.monotonic() - t:.0f}s ({work})", flush=True
        )
        t = time.monotonic()
        subprocess.run(
            [str(BIN / "rqp"), "pack", str(work / "data.jsonl"), str(_script(work)), "--id", "scale"],
            env=env,
            check=True,
            capture_output=True,
        )
        (work / "data.jsonl").unlink()
        print(f"scale: packed in {time.monotonic() - t:.0f}s", flush=True)
        for i in range(args.processors):
            with open(work / f"processor-{i}.log", "wb") as log:
                running.append(
                    subprocess.Popen(
                        [str(BIN / "rqp-processor"), "--workers", "1"],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + 120
        while len(r.smembers("rq:workers")) < args.processors:
            if time.monotonic() > deadline or any(p.poll() is not None for p in running):
                raise SystemExit(f"scale: processors did not start; see {work}/processor-*.log")
            time.sleep(0.1)
        mem0, cpu0, aof0 = int(r.info("memory")["used_memory"]), redis_cpu(r), aof_bytes(work / "redis")
        with open(work / "scheduler.log", "wb") as log:
            sched = subprocess.Popen(
                [str(BIN / "rqp-scheduler"), "run", "scale"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running.append(sched)
        roots = {
            "scheduler": sched.pid,
            **{f"processor supervisor {i}": p.pid for i, p in enumerate(running[: args.processors])},
        }
        sampler = Sampler(r, roots)
        sampler.start()
        t0 = time.monotonic()
        last = 0.0
        while sched.poll() is None:
            time.sleep(0.5)
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                done = r.bitcount("rqp:w:scale:done")
                print(
                    f"scale: {done:,} / {n:,} done after {last - t0:.0f}s ({done / max(1e-9, last - t0):,.0f} records/s so far)",
                    flush=True,
                )
        sampler.stop.set()
        sampler.join()
        sampler.sample()  # the processors are still up: their workers' and script processes' peaks
        if sched.returncode != 0:
            print((work / "scheduler.log").read_text()[-3000:], file=sys.stderr)
            raise SystemExit(f"scale: the scheduler exited with {sched.returncode}")
        cpu = redis_cpu(r) - cpu0
        meta = {k.decode(): v.decode() for k, v in r.hgetall("rqp:w:scale:meta").items()}
        perf = {k.decode(): v.decode() for k, v in r.hgetall("rqp:w:scale:perf").items()}
        done = r.bitcount("rqp:w:scale:done")
        retained = int(r.info("memory")["used_memory"]) - mem0
        time.sleep(1.5)  # appendfsync everysec: let the last second reach the file
        aof = aof_bytes(work / "redis") - aof0
        started, last_commit, finished = float(meta["started_at"]), float(perf["last"]), float(meta["finished_at"])
        rows = [
            ("records", f"{n:,} ({args.record_bytes} B each), {done:,} done"),
            (
                "records/s end to end",
                f"{n / (last_commit - started):,.0f} (first queued to last committed, {last_commit - started:,.0f}s)",
            ),
            ("records/s with consolidation", f"{n / (finished - started):,.0f} ({finished - started:,.0f}s)"),
            ("Redis CPU per record", f"{cpu / n * 1e6:.2f} µs (the fleet's ceiling: {n / cpu:,.0f} records/s)"),
            ("Redis peak memory", f"{sampler.redis_peak / 2**20:,.1f} MiB ({mem0 / 2**20:,.1f} MiB before the run)"),
            (
                "Redis memory retained",
                f"{retained / 2**20:,.2f} MiB = {retained / n:.2f} B per record (until the status TTL)",
            ),
            (
                "AOF written",
                f"{aof / 2**20:,.0f} MiB = {aof / n:.0f} B per record; beyond the records' own sealed bytes: {aof / n - sealed:.0f} B per record",
            ),
            *[(f"peak RSS, {role}", f"{rss / 2**20:,.0f} MiB") for role, rss in sorted(sampler.rss.items())],
        ]
        print()
        for name, value in rows:
            print(f"  {name:<32}{value}")
        (work / "scale.json").write_text(json.dumps(dict(rows), indent=1))
        return 0
    finally:
        stop_process_groups(running)
        r.close()
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _script(work: Path) -> Path:
    p = work / "scale.py"
    p.write_text(SCRIPT)
    return p


if __name__ == "__main__":
    sys.exit(main())
