"""The outbox: status and event messages committed to Redis with the state they announce, then
published to the queue. Whatever a crash leaves behind, a scheduler publishes later, so delivery
is at least once (message ids let a consumer drop duplicates).

An outbox value is the destination queue, a newline, and the message body.
"""

from __future__ import annotations

import time
from typing import cast

import redis
from redis.client import Pipeline

from ..storage import MessageQueue
from ._codecs import raw, text
from ._keys import OUTBOX, OUTBOX_TIMES

__all__ = ["flush_outbox", "outbox_add", "outbox_value", "publish_outbox"]


def outbox_value(queue: str, body: bytes) -> bytes:
    """An outbox entry: the destination queue, a newline, the message body."""
    return queue.encode() + b"\n" + body


def outbox_add(pipe: Pipeline, queue: str, messages: list[tuple[str, bytes]], now: float | None = None) -> None:
    now = time.time() if now is None else now
    for mid, body in messages:
        pipe.hset(OUTBOX, mid, outbox_value(queue, body))
        pipe.zadd(OUTBOX_TIMES, {mid: now})


def publish_outbox(r: redis.Redis, mq: MessageQueue, mids: list[str]) -> int:
    """Publish the named outbox entries and drop them from the outbox."""
    if not mids:
        return 0
    values = r.hmget(OUTBOX, mids)
    by_queue: dict[str, list[bytes]] = {}
    present = []
    for mid, value in zip(mids, values, strict=True):
        v = raw(value)
        if v is None:
            continue  # someone else published it
        name, _, body = v.partition(b"\n")
        by_queue.setdefault(name.decode(errors="replace"), []).append(body)
        present.append(mid)
    for queue, bodies in by_queue.items():
        mq.send_many(queue, bodies)
    if present:
        pipe = r.pipeline(transaction=False)
        pipe.hdel(OUTBOX, *present)
        pipe.zrem(OUTBOX_TIMES, *present)
        pipe.execute()
    return len(present)


def flush_outbox(r: redis.Redis, mq: MessageQueue, older_than: float = 10.0, limit: int = 1000) -> int:
    """Publish entries a crashed or slow process left behind. Index members with no entry (published
    by someone else, or written behind rqp's back: any bytes) are dropped, so they can neither crash
    a role nor crowd out real entries."""
    found = cast(list[bytes | str], r.zrangebyscore(OUTBOX_TIMES, "-inf", time.time() - older_than, start=0, num=limit))
    if not found:
        return 0
    values = r.hmget(OUTBOX, found)
    stale = [m for m, v in zip(found, values, strict=True) if v is None]
    if stale:
        r.zrem(OUTBOX_TIMES, *stale)
    return publish_outbox(r, mq, [str(text(m)) for m, v in zip(found, values, strict=True) if v is not None])
