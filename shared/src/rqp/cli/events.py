"""``rqp events``: the status or events queue's messages, opened (signature and MAC checked,
decrypted) and printed as JSON lines; consumed, or only looked at with ``--peek``."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

from ..errors import RqpError
from ..messages import open_envelope, peek_workload
from ..storage import Message, MessageQueue, RedisMessageQueue
from ..workload import Workload
from .context import backends, open_workload

__all__ = ["cmd_events", "register"]


def _peek_all(mq: MessageQueue, queue: str, page: int) -> Iterator[Message]:
    """Every message of ``queue``, without consuming any: a Redis stream is read page by page
    (XRANGE from after the last id seen); a queue that can only show its front (Azure Queue
    Storage: 32 messages) shows that, and says how much it could not."""
    if isinstance(mq, RedisMessageQueue):
        # MessageQueue.peek has no cursor; the stream's key and client are RedisMessageQueue's own
        key, client = mq._key(queue), mq._r
        start = "-"
        while True:
            entries = client.xrange(key, min=start, count=page)
            for mid, fields in entries:
                yield Message(mid.decode(), fields[b"b"], mid.decode(), 0)
            if len(entries) < page:
                return
            start = "(" + entries[-1][0].decode()
    msgs = mq.peek(queue, page)
    yield from msgs
    backlog = mq.length(queue)
    if backlog > len(msgs):
        print(
            f"rqp: note: looked at the first {len(msgs)} of about {backlog:,} messages: this queue shows only its front "
            "without consuming it (drop --peek to read them all)",
            file=sys.stderr,
        )


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, an infinity) as null: each line ``rqp events``
    prints is strict JSON, whatever a message carried (README: NaN/Infinity are never encoded)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def cmd_events(args: argparse.Namespace) -> int:
    b = backends(args).open_all()  # every client now: a misconfigured one fails before any message is taken
    settings, mq = b.settings, b.queue
    cache: dict[str, Workload | RqpError] = {}

    def workload_for(wid: str) -> Workload:
        # open_workload says "deleted by ... at ..." for a workload 'rqp delete' removed; a failure
        # is kept too, so the audit log is searched once per workload, not once per message
        if wid not in cache:
            try:
                cache[wid] = open_workload(b, wid)
            except RqpError as exc:
                cache[wid] = exc
        got = cache[wid]
        if isinstance(got, RqpError):
            raise got
        return got

    queue = settings.events_queue if args.queue == "events" else settings.status_queue
    if isinstance(mq, RedisMessageQueue):
        # past its retention only because a consumer group has not read it: say so first
        warning = mq.backlog_warning(queue)
        if warning:
            print(f"rqp: warning: {warning}", file=sys.stderr)
    shown = 0
    deadline = time.monotonic() + args.wait
    while True:
        msgs = (
            _peek_all(mq, queue, max(1, args.max))
            if args.peek
            else mq.receive(queue, args.max, wait=min(1.0, args.wait))
        )
        got = 0
        for m in msgs:
            got += 1
            wid = peek_workload(m.body)
            if args.workload and wid != args.workload:
                continue
            try:
                env = open_envelope(m.body, workload_for, queue)
            except RqpError as exc:
                gone = isinstance(cache.get(wid or ""), RqpError) and " was deleted" in str(exc)
                # a deleted workload's messages cannot be opened any more: that is what they are
                line = {"workload": wid, "deleted": str(exc)} if gone else {"error": str(exc)}
                print(json.dumps({**line, "message_id": m.id}), file=sys.stderr)
                if not args.peek:
                    mq.delete(queue, m)
                continue
            items = env.payload if isinstance(env.payload, list) else [env.payload]
            for item in items:
                print(json.dumps(_json_safe(item), allow_nan=False), flush=True)
                shown += 1
            if not args.peek:
                mq.delete(queue, m)
        if args.peek or (not got and (not args.follow and time.monotonic() >= deadline)):
            break
    print(f"{shown} {args.queue} records", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``events`` on ``rqp``'s sub-commands."""
    p = sub.add_parser("events", parents=[common], help="read the status (default) or events queue")
    p.add_argument("--queue", choices=["status", "events"], default="status")
    p.add_argument("--workload")
    p.add_argument("--peek", action="store_true", help="look without consuming")
    p.add_argument("--follow", "-f", action="store_true")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for messages")
    p.add_argument("--max", type=int, default=32)
    p.set_defaults(func=cmd_events)
