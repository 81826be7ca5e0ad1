"""Huey with RedisHuey (blocking dequeue): the realistic job as a task.

Workers: ``huey_consumer huey_job.huey -w 2 -k process`` (2 worker processes), results off
(the job stores its own); tasks are enqueued one call each.
"""

from __future__ import annotations

import os

from common import QUEUE, job
from huey import RedisHuey

huey = RedisHuey(QUEUE, url=os.environ["BENCH_REDIS_URL"], results=False)


@huey.task()
def realistic(rid: int, sealed_b64: str) -> None:
    job().run(rid, sealed_b64)


def enqueue(url: str, items: list[tuple[int, str]]) -> None:
    for rid, ct in items:
        realistic(rid, ct)
