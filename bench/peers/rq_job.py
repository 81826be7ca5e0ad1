"""RQ (the library rqp runs on): the realistic job as an RQ job function.

Workers: ``rq worker -w rq.worker.Worker`` (the default: fork a work horse per job) or
``-w rq.worker.SimpleWorker`` (no fork), 2 processes, default pickle serializer; jobs are
enqueued with ``enqueue_many`` in pipelines of 1,000 and ``result_ttl=0`` (no result stored:
the job stores its own).
"""

from __future__ import annotations

import redis
from common import QUEUE, job
from rq import Queue

BATCH = 1000


def realistic(rid: int, sealed_b64: str) -> None:
    job().run(rid, sealed_b64)


def enqueue(url: str, items: list[tuple[int, str]]) -> None:
    r = redis.Redis.from_url(url)
    q = Queue(QUEUE, connection=r)
    for i in range(0, len(items), BATCH):
        pipe = r.pipeline()
        q.enqueue_many(
            [Queue.prepare_data(realistic, args=(rid, ct), result_ttl=0) for rid, ct in items[i : i + BATCH]],
            pipeline=pipe,
        )
        pipe.execute()
    r.close()
