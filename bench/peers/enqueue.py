"""The peers' producer, one process per round, so each round can use a fresh Redis server.

    python enqueue.py MODULE BASE N RAW      (environment: BENCH_REDIS_URL, BENCH_KEY)

Imports the peer module (which binds its broker to BENCH_REDIS_URL), seals records BASE..BASE+N-1
(the same ~1 KB records as rqp's data file; not timed), prints ``ready``, then obeys lines on
stdin: ``warm`` enqueues 32 warm-up jobs and prints ``ok``; ``go`` enqueues the N jobs and prints
``done <wall seconds> <cpu seconds>``; end of input exits.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import random
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import make_data
from common import record_aad, seal

WARMUP = 32
WARMUP_BASE = 10**9
SEED = 20261124


def lines(n: int) -> list[bytes]:
    rng = random.Random(SEED)
    return [json.dumps(make_data.record(i, rng)).encode() for i in range(n)]


def items(aead: AESGCM, data: list[bytes], base: int, n: int, raw: bool) -> list[tuple[int, object]]:
    out: list[tuple[int, object]] = []
    for i in range(n):
        rid = base + i
        sealed = seal(aead, data[i % len(data)], record_aad(rid))
        out.append((rid, sealed if raw else base64.b64encode(sealed).decode()))
    return out


def main() -> int:
    module, base, n, raw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    mod = importlib.import_module(module)
    url = os.environ["BENCH_REDIS_URL"]
    aead = AESGCM(bytes.fromhex(os.environ["BENCH_KEY"]))
    data = lines(n)
    warm = items(aead, data, WARMUP_BASE, WARMUP, raw)
    work = items(aead, data, base, n, raw)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "warm":
            mod.enqueue(url, warm)
            print("ok", flush=True)
        elif cmd == "go":
            c0, t0 = time.process_time(), time.perf_counter()
            mod.enqueue(url, work)
            print(f"done {time.perf_counter() - t0:.6f} {time.process_time() - c0:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
