"""Timings of the Python API on this machine: submit a DataFrame of 100,000 rows, stream its
results, ``to_pandas()``; and what ``Client.submit`` of an iterable costs against ``rqp pack`` of
the same records as a file. Starts its own Redis, scheduler and processor, stops them after.

    .venv/bin/python examples/api_timings.py [--rows 100000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE))

from redis_server import RedisServer  # noqa: E402

SCRIPT = "def process(r):\n    return {'cents': round(r['amount'] * 100)}\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    import pandas as pd

    work = Path(tempfile.mkdtemp(prefix="rqp-api-timings-"))
    server = RedisServer(dir=str(work)).start()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RQP_")},
        "RQP_REDIS_URL": server.url,
        "RQP_BLOB_URL": f"file://{work / 'blobs'}",
        "RQP_KEK_FILE": str(work / "kek.pem"),
        "RQP_SIGNING_KEY_FILE": str(work / "signer.pem"),
        "RQP_TRUSTED_SIGNERS_FILE": str(work / "signer.pub.pem"),
        "RQP_ALLOW_INSECURE_REDIS": "true",
        "RQP_LOG_LEVEL": "WARNING",
    }
    procs: list[subprocess.Popen] = []
    try:
        for cmd in (
            ["keygen", "--out", env["RQP_KEK_FILE"]],
            ["keygen", "--signing", "--out", env["RQP_SIGNING_KEY_FILE"]],
        ):
            subprocess.run([str(BIN / "rqp"), *cmd], env=env, check=True, capture_output=True)
        os.environ.update(env)
        import rqp

        client = rqp.Client()
        client.backends.open_all()  # connections and keys opened once, before anything is timed
        frame = pd.DataFrame(
            {"invoice": [f"INV-{i:06d}" for i in range(args.rows)], "amount": [i / 7 for i in range(args.rows)]}
        )
        records = frame.to_dict("records")
        data = work / "same.jsonl"
        data.write_text("".join(json.dumps(x) + "\n" for x in records))
        script = work / "p.py"
        script.write_text(SCRIPT)

        t = time.perf_counter()
        subprocess.run(
            [str(BIN / "rqp"), "pack", str(data), str(script), "--id", "by-cli"],
            env=env,
            check=True,
            capture_output=True,
        )
        cli = time.perf_counter() - t
        t = time.perf_counter()
        client.submit(data, str(script), id="by-path")
        by_path = time.perf_counter() - t
        t = time.perf_counter()
        client.submit(iter(records), str(script), id="by-iterable")
        iterable = time.perf_counter() - t
        print(f"rqp pack of a {data.stat().st_size / 1e6:.1f} MB JSON Lines file (a new process): {cli:.2f}s")
        print(f"Client.submit of the same file:                 {by_path:.2f}s")
        print(f"Client.submit of the same {args.rows:,} records as an iterable: {iterable:.2f}s")

        with open(work / "scheduler.log", "wb") as log:
            procs.append(subprocess.Popen([str(BIN / "rqp-scheduler"), "serve"], env=env, stdout=log, stderr=log))
        with open(work / "processor.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [str(BIN / "rqp-processor"), "--workers", str(args.workers)], env=env, stdout=log, stderr=log
                )
            )

        t0 = time.perf_counter()
        w = client.submit(frame, SCRIPT, id_field="invoice")
        print(
            f">>> w = client.submit(frame_of_{args.rows}_rows, SCRIPT, id_field='invoice')   # {time.perf_counter() - t0:.2f}s"
        )
        stream = w.stream(poll=0.1)
        first = next(stream)
        print(f">>> next(w.stream())   # first result {time.perf_counter() - t0:.2f}s after submit: {first}")
        n = 1 + sum(1 for _ in stream)
        print(f">>> sum(1 for _ in stream)   # all {n:,} streamed {time.perf_counter() - t0:.2f}s after submit")
        t = time.perf_counter()
        out = w.to_pandas()
        print(f">>> w.to_pandas()   # {out.shape[0]:,} rows x {out.shape[1]} columns in {time.perf_counter() - t:.2f}s")
        print(f"state {w.status().state}, {w.status().rate:,.0f} records/s by the processors")
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
