"""Celery 5 with the Redis broker: the realistic job as a task.

Workers: ``celery worker -P prefork -c 2`` without gossip, mingle and heartbeat (they only add
broker traffic), JSON serializer, results ignored (no result backend), default prefetch;
tasks are published over one producer connection.
"""

from __future__ import annotations

import os

from celery import Celery
from common import QUEUE, job

app = Celery("celery_job", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    worker_send_task_events=False,
)


@app.task(name="bench.realistic")
def realistic(rid: int, sealed_b64: str) -> None:
    job().run(rid, sealed_b64)


def enqueue(url: str, items: list[tuple[int, str]]) -> None:
    with app.producer_or_acquire() as producer:
        for rid, ct in items:
            realistic.apply_async((rid, ct), producer=producer)
