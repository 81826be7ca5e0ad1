"""Dramatiq with its Redis broker: the realistic job as an actor.

Workers: ``dramatiq dramatiq_job -p 2 -t 8`` (2 processes x 8 threads, as in the anchor), default
middleware, ``max_retries=0``; messages are sent one ``send()`` each (Dramatiq has no batch send).
"""

from __future__ import annotations

import os

import dramatiq
from common import QUEUE, job
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def realistic(rid: int, sealed_b64: str) -> None:
    job().run(rid, sealed_b64)


def enqueue(url: str, items: list[tuple[int, str]]) -> None:
    for rid, ct in items:
        realistic.send(rid, ct)
