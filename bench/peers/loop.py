"""The limit reference: a hand-written Redis list loop doing the realistic job, nothing else.

No framework, no job metadata, no acknowledgement, no retry: the producer LPUSHes
``<id>:<sealed record>`` values (pipelined, 1,000 per round trip); each worker process pops up to
``batch`` values (``LPOP key count``), runs the identical job on each, and sends the writes of
that batch (``SET`` per result, one ``HSET`` for the statuses) in the same pipeline as the pop of
the next batch: one round trip per batch. ``--batch 1`` is the one-round-trip-per-job loop,
``--batch 64`` the batched one.

    python loop.py --batch 64     # one worker process; runs until terminated
"""

from __future__ import annotations

import argparse
import signal
import sys

import redis
from common import RESULT, STATUS, job

LIST = "bench:list"
PUSH_BATCH = 1000


def worker(batch: int) -> None:
    j = job()
    r = j.r
    stop = False

    def on_term(*_a: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    results: dict[str, bytes] = {}
    statuses: dict[int, str] = {}
    while not stop:
        pipe = r.pipeline(transaction=False)
        if results:
            for k, v in results.items():
                pipe.set(k, v)
            pipe.hset(STATUS, mapping=statuses)
        pipe.lpop(LIST, batch)
        popped = pipe.execute()[-1]
        results, statuses = {}, {}
        if not popped:
            got = r.blpop([LIST], timeout=1)
            if not got:
                continue
            popped = [got[1]]
        for value in popped:
            head, _, sealed = value.partition(b":")
            rid = int(head)
            results[RESULT + str(rid)] = j.compute(rid, sealed)
            statuses[rid] = "done"


def enqueue(url: str, items: list[tuple[int, bytes]]) -> None:
    r = redis.Redis.from_url(url)
    for i in range(0, len(items), PUSH_BATCH):
        r.rpush(LIST, *[b"%d:%s" % (rid, ct) for rid, ct in items[i : i + PUSH_BATCH]])
    r.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    worker(ap.parse_args().batch)
    sys.exit(0)
