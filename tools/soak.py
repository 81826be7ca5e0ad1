"""Soak: 100,000 records, 4 worker processes, a worker SIGKILLed mid-chunk every second.

Prints how many results came back, how many were lost or duplicated, how many chunks had to be
re-run, and the records/s achieved. Exit 0 only if every record is done exactly once and no
process it started (supervisor, workers, script hosts) is still running once it stopped them.

    python tools/soak.py [--records 100000] [--workers 4] [--kill-every 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples")]
from harness import Cluster  # noqa: E402
from redis_server import RedisServer  # noqa: E402

from rqp.keys import generate_kek  # noqa: E402

SCRIPT = """
def process(record):
    return {"n": record["n"], "sq": record["n"] * record["n"]}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--kill-every", type=float, default=1.0, help="seconds between worker kills")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rqp-soak-"))
    generate_kek(root / "kek.pem", root / "kek.pub.pem")
    (root / "redis").mkdir()
    server = RedisServer(appendonly=True, dir=str(root / "redis")).start()
    cluster = Cluster(
        root / "run",
        server.url,
        root / "kek.pem",
        extra_env={
            "RQP_LEASE_SECONDS": "10",
            "RQP_MAX_ATTEMPTS": "20",
            "RQP_CHUNK_MAX": "512",
        },
    )
    rng = random.Random(42)
    kills = 0
    try:
        data = cluster.write_data("soak.jsonl", ({"n": i, "pad": "x" * 200} for i in range(args.records)))
        cluster.pack("soak", data, cluster.write_script("soak.py", SCRIPT))
        cluster.start_processor(workers=args.workers)
        cluster.wait_for(lambda: len(cluster.r.smembers("rq:workers")) >= args.workers, 60, "workers")
        t0 = time.monotonic()
        sched = cluster.start_scheduler("soak")
        next_kill = time.monotonic() + args.kill_every
        while sched.poll() is None:
            if time.monotonic() > t0 + args.timeout:
                sched.kill()
                print("soak: timed out", file=sys.stderr)
                return 1
            if time.monotonic() >= next_kill:
                pids = cluster.worker_pids()
                # a worker holding a chunk, when one does: the kill is meant to land mid-chunk
                pids = [p for p in pids if cluster.r.exists(f"rqp:held:{socket.gethostname()}:{p}")] or pids
                if pids:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    kills += 1
                next_kill = time.monotonic() + args.kill_every
                done = cluster.r.bitcount("rqp:w:soak:done")
                print(f"soak: {done:,}/{args.records:,} done, {kills} workers killed", flush=True)
            try:
                sched.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        elapsed = time.monotonic() - t0
        results = {}
        dup = 0
        for line in cluster.rqp("results", "soak").stdout.decode().splitlines():
            doc = json.loads(line)
            if doc["id"] in results:
                dup += 1
            results[doc["id"]] = doc["result"]
        wrong = sum(1 for i, r in results.items() if r != {"n": i, "sq": i * i})
        lost = args.records - len(results)
        meta = {k.decode(): v.decode() for k, v in cluster.r.hgetall("rqp:w:soak:meta").items()}
        print(
            f"soak: {len(results):,} results of {args.records:,} records: {lost} lost, {dup} duplicated, {wrong} wrong"
        )
        print(
            f"soak: {kills} worker processes killed, {meta.get('reclaimed', 0)} chunks re-run, "
            f"{args.records / elapsed:,.0f} records/s over {elapsed:.1f}s with {args.workers} workers"
        )
        return 0 if (lost, dup, wrong) == (0, 0, 0) and sched.returncode == 0 else 1
    finally:
        try:
            cluster.stop()  # fails if any worker or script host outlives the stop (harness check)
        finally:
            server.stop()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AssertionError as exc:  # processes left behind (tests/harness.py)
        print(f"soak: {exc}", file=sys.stderr)
        sys.exit(1)
