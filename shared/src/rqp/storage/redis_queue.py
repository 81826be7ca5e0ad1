"""Message queues on Redis Streams: the local backend's queue, no cloud needed."""

from __future__ import annotations

from typing import Any

import redis

from ..errors import StorageUnavailableError
from ._queue import Message, MessageQueue
from .retention import Retention, Trimmer, TrimResult, trim_stream

__all__ = ["RedisMessageQueue"]

_GROUP = "rqp"
#: the key prefix of each queue's stream (``rqp:mq:<queue>``), for the ACL rules
STREAM_PREFIX = "rqp:mq:"
_PREFIX = STREAM_PREFIX


class RedisMessageQueue(MessageQueue):
    """One stream per queue with one consumer group; visibility timeout by XAUTOCLAIM. Senders
    keep each stream within ``retention`` (``rqp.storage.retention``)."""

    max_message_bytes = 512 * 1024

    def __init__(self, client: redis.Redis, consumer: str = "rqp", retention: Retention | None = None) -> None:
        # redis-py types every reply as bytes | str; this client never decodes replies
        self._r: Any = client
        self._consumer = consumer
        self.retention = retention or Retention()
        self._trimmer = Trimmer(self.retention)
        self._groups: set[str] = set()
        kw = client.connection_pool.connection_kwargs
        self.location = f"redis://{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"

    def _key(self, queue: str) -> str:
        return _PREFIX + queue

    def _unusable(self, queue: str, exc: redis.ResponseError) -> StorageUnavailableError:
        """A stream key that holds something else (a Redis writer's junk: ``SET rqp:mq:Q junk``):
        nothing can be published there until it is deleted, which is an outage of the queue --
        senders keep what they would publish (the outbox) and try again -- never a failed workload."""
        key = self._key(queue)
        try:
            kind = self._r.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        except redis.RedisError:
            kind = "?"
        self._groups.discard(queue)
        return StorageUnavailableError(
            f"message queue {queue}: Redis key {key} is a {kind}, not a stream ({str(exc).split(' ', 1)[0]}: written "
            f"by someone else); nothing is published on it until it is deleted: DEL {key}"
        )

    def _ensure_group(self, queue: str) -> None:
        if queue in self._groups:
            return
        try:
            self._r.xgroup_create(self._key(queue), _GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise self._unusable(queue, exc) from None
        self._groups.add(queue)

    def send(self, queue: str, body: bytes) -> str:
        self._ensure_group(queue)
        try:
            mid = self._r.xadd(self._key(queue), {b"b": body}).decode()
        except redis.ResponseError as exc:
            raise self._unusable(queue, exc) from None
        self._trimmer.maybe_trim(self._r, self._key(queue), queue)
        return str(mid)

    def send_many(self, queue: str, bodies: list[bytes]) -> list[str]:
        self._ensure_group(queue)
        pipe = self._r.pipeline(transaction=False)
        for b in bodies:
            pipe.xadd(self._key(queue), {b"b": b})
        try:
            ids = [i.decode() for i in pipe.execute()]
        except redis.ResponseError as exc:
            raise self._unusable(queue, exc) from None
        self._trimmer.maybe_trim(self._r, self._key(queue), queue)
        return ids

    def trim(self, queue: str) -> TrimResult:
        """Trim ``queue``'s stream to the retention now (senders do it every few seconds)."""
        return trim_stream(self._r, self._key(queue), queue, self.retention)

    def backlog_warning(self, queue: str) -> str | None:
        """Trim ``queue`` now and say whether it is still past its bound (unread messages kept):
        for a reader (``rqp events``) to show what the senders log."""
        try:
            return self.trim(queue).warning
        except redis.exceptions.NoPermissionError:
            return None  # an ACL from before retention: the senders' logs say so

    def receive(
        self, queue: str, max_messages: int = 32, visibility_timeout: float = 30.0, wait: float = 0.0
    ) -> list[Message]:
        self._ensure_group(queue)
        key = self._key(queue)
        out: list[Message] = []
        # messages received earlier and not deleted within the visibility timeout come back first
        _next, claimed, *_ = self._r.xautoclaim(
            key,
            _GROUP,
            self._consumer,
            min_idle_time=int(visibility_timeout * 1000),
            start_id="0-0",
            count=max_messages,
        )
        for mid, fields in claimed:
            if fields:
                out.append(Message(mid.decode(), fields[b"b"], mid.decode(), 2))
        if len(out) < max_messages:
            block = int(wait * 1000) if wait > 0 and not out else None
            resp = self._r.xreadgroup(_GROUP, self._consumer, {key: ">"}, count=max_messages - len(out), block=block)
            for _stream, entries in resp or []:
                for mid, fields in entries:
                    out.append(Message(mid.decode(), fields[b"b"], mid.decode(), 1))
        return out

    def delete(self, queue: str, message: Message) -> None:
        key = self._key(queue)
        pipe = self._r.pipeline(transaction=False)
        pipe.xack(key, _GROUP, message.receipt)
        pipe.xdel(key, message.receipt)
        pipe.execute()

    def peek(self, queue: str, max_messages: int = 32) -> list[Message]:
        entries = self._r.xrange(self._key(queue), count=max_messages)
        return [Message(mid.decode(), f[b"b"], mid.decode(), 0) for mid, f in entries]

    def length(self, queue: str) -> int:
        return int(self._r.xlen(self._key(queue)))
