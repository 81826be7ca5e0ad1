"""The outbox: status and event messages committed to Redis with the state they announce, then
published to the queue. Whatever a crash leaves behind, a scheduler publishes later, so delivery
is at least once (message ids let a consumer drop duplicates).

An outbox value is the destination queue, a newline, and the message body.

A queue that cannot take messages (down, or its Redis stream key replaced by junk) stalls only
what is bound for it: those entries stay in the outbox for the next flush, the first failure per
queue is logged and recorded in ``rqp:rejected``, and the caller goes on -- one queue's trouble
never fails a workload.
"""

from __future__ import annotations

import logging
import time
from typing import cast

import redis
from redis.client import Pipeline

from ..errors import RqpError
from ..identity import process_identity
from ..storage import MessageQueue
from ._codecs import raw, text
from ._global import record_rejection
from ._keys import OUTBOX, OUTBOX_TIMES

log = logging.getLogger("rqp.outbox")
#: queues this process found unable to take messages, reported once until they take one again
_STALLED: set[str] = set()

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
    """Publish the named outbox entries and drop them from the outbox; how many. Those bound for
    a queue that takes none stay for a later flush (see the module's docstring)."""
    if not mids:
        return 0
    values = r.hmget(OUTBOX, mids)
    by_queue: dict[str, list[bytes]] = {}
    found: list[tuple[str, str]] = []
    for mid, value in zip(mids, values, strict=True):
        v = raw(value)
        if v is None:
            continue  # someone else published it
        name, _, body = v.partition(b"\n")
        queue = name.decode(errors="replace")
        by_queue.setdefault(queue, []).append(body)
        found.append((mid, queue))
    sent: set[str] = set()
    for queue, bodies in by_queue.items():
        try:
            mq.send_many(queue, bodies)
        except RqpError as exc:
            _stalled(r, queue, exc)
            continue
        _STALLED.discard(queue)
        sent.add(queue)
    present = [mid for mid, q in found if q in sent]
    if present:
        pipe = r.pipeline(transaction=False)
        pipe.hdel(OUTBOX, *present)
        pipe.zrem(OUTBOX_TIMES, *present)
        pipe.execute()
    return len(present)


def _stalled(r: redis.Redis, queue: str, exc: RqpError) -> None:
    """Say once (log and ``rqp:rejected``) that ``queue`` takes no messages; they wait."""
    if queue in _STALLED:
        return
    _STALLED.add(queue)
    reason = f"{exc}; its messages wait in the outbox and are published once it takes them again"
    log.warning("%s", reason)
    try:
        record_rejection(r, job=f"queue:{queue}", workload=None, worker=process_identity(), reason=reason)
    except redis.RedisError:
        pass  # logged above


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
