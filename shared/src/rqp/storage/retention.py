"""How long the Redis streams behind the message queues keep their messages.

The status, events and metrics streams (``rqp:mq:<queue>``) are written whether or not anything
reads them; without a bound, a deployment with no consumer grows them forever (a status message
is one chunk's records: ~580 B in Redis, 2-21 KB when the records carry their own ids). Each stream is trimmed to ``max_entries`` messages and ``max_age_seconds`` of
age, at most once per ``every_seconds`` per queue, by whoever sends to it.

What a consumer group has not read yet is kept past the bound while ``keep_unread`` is on and
the group has a consumer (something has read from it: ``rqp events``, your own reader); the
sender warns instead, so a stalled consumer is seen rather than silently skipped. The group the
senders create themselves, which nobody has read from yet, holds nothing back: with no consumer
at all the bound holds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis

__all__ = [
    "DEFAULT_QUEUE_KEEP_UNREAD",
    "DEFAULT_QUEUE_MAX_AGE_HOURS",
    "DEFAULT_QUEUE_MAX_ENTRIES",
    "DEFAULT_QUEUE_TRIM_EVERY_SECONDS",
    "Retention",
    "TrimResult",
    "Trimmer",
    "trim_stream",
]

log = logging.getLogger("rqp.queue")

#: messages a stream keeps: a status message stands for a chunk's records (~580 B in Redis;
#: 2-21 KB with the records' own ids), so about 1.2-42 MB of status stream at the bound
DEFAULT_QUEUE_MAX_ENTRIES = 2_000
#: hours a message is kept (the status records' own TTL, RQP_STATUS_TTL_DAYS, is 7 days)
DEFAULT_QUEUE_MAX_AGE_HOURS = 168.0
#: keep what a consumer group with a consumer has not read, past the bound (with a warning)
DEFAULT_QUEUE_KEEP_UNREAD = True
#: a sender trims a stream at most this often (the bound may be passed by what arrives between)
DEFAULT_QUEUE_TRIM_EVERY_SECONDS = 10.0
#: entries read back per trim to find where to cut below a group's unread ones
TRIM_BATCH = 1000
#: the same backlog warning is logged at most this often per queue
WARN_EVERY_SECONDS = 600.0

StreamId = tuple[int, int]


def _parse(mid: bytes | str) -> StreamId:
    s = mid.decode() if isinstance(mid, bytes) else mid
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


def _text(mid: StreamId) -> str:
    return f"{mid[0]}-{mid[1]}"


def _after(mid: StreamId) -> StreamId:
    return mid[0], mid[1] + 1


@dataclass(frozen=True)
class Retention:
    """A stream's bound: at most ``max_entries`` messages, none older than ``max_age_seconds``
    (0 turns either off), trimmed at most every ``every_seconds``."""

    max_entries: int = DEFAULT_QUEUE_MAX_ENTRIES
    max_age_seconds: float = DEFAULT_QUEUE_MAX_AGE_HOURS * 3600
    keep_unread: bool = DEFAULT_QUEUE_KEEP_UNREAD
    every_seconds: float = DEFAULT_QUEUE_TRIM_EVERY_SECONDS
    #: False for a Redis user that may not read the stream's messages (the metrics logger's): it
    #: trims by age, and by length only where no group is reading
    reads: bool = True

    @classmethod
    def from_settings(cls, settings: Any, reads: bool = True) -> Retention:
        return cls(
            max_entries=settings.queue_max_entries,
            max_age_seconds=settings.queue_max_age_hours * 3600,
            keep_unread=settings.queue_keep_unread,
            reads=reads,
        )


@dataclass(frozen=True)
class TrimResult:
    queue: str
    #: messages in the stream after the trim
    length: int
    dropped: int
    #: the consumer groups whose unread messages were kept past the bound
    held_by: tuple[str, ...] = field(default=())
    #: the bound it was trimmed to
    retention: Retention = field(default_factory=Retention)
    #: age of the oldest message left, seconds
    oldest_age: float = 0.0

    @property
    def warning(self) -> str | None:
        """One line when the stream is past its bound (only unread messages can keep it there)."""
        r = self.retention
        over_len = r.max_entries > 0 and self.length > r.max_entries
        over_age = r.max_age_seconds > 0 and self.oldest_age > r.max_age_seconds
        if not (over_len or over_age):
            return None
        past = (
            f"{self.length:,} messages, past RQP_QUEUE_MAX_ENTRIES={r.max_entries:,}"
            if over_len
            else f"messages {self.oldest_age / 3600:.1f} h old, past RQP_QUEUE_MAX_AGE_HOURS={r.max_age_seconds / 3600:g}"
        )
        who = ", ".join(repr(g) for g in self.held_by) or "a consumer group"
        return (
            f"queue {self.queue} holds {past}: consumer group {who} has not read them; read them "
            f"(rqp events --queue ...) or set RQP_QUEUE_KEEP_UNREAD=false to let the bound drop them"
        )


def _unread_floor(r: Any, key: str) -> tuple[StreamId | None, tuple[str, ...]]:
    """The oldest message some consumer group with a consumer has not read (or not acknowledged),
    and those groups' names. Groups without a consumer hold nothing back."""
    floor: StreamId | None = None
    held: list[str] = []
    for g in r.xinfo_groups(key):
        if int(g.get("consumers") or 0) == 0:
            continue
        name = g["name"].decode() if isinstance(g["name"], bytes) else str(g["name"])
        if int(g.get("pending") or 0) > 0:
            first = r.xpending(key, name).get("min")
            group_floor = _parse(first) if first else _after(_parse(g["last-delivered-id"]))
        else:
            group_floor = _after(_parse(g["last-delivered-id"]))
        if floor is None or group_floor < floor:
            floor = group_floor
        held.append(name)
    return floor, tuple(held)


def trim_stream(r: Any, key: str, queue: str, retention: Retention, now: float | None = None) -> TrimResult:
    """Trim stream ``key`` to ``retention``; never below what a reading group has not read while
    ``retention.keep_unread``. Reads no message unless it must find the read ones below a
    group's unread ones (``retention.reads``)."""
    now = time.time() if now is None else now
    before = int(r.xlen(key))
    floor, held = _unread_floor(r, key) if retention.keep_unread and before else (None, ())
    cut: StreamId | None = None
    if retention.max_age_seconds > 0:
        cut = (max(0, int((now - retention.max_age_seconds) * 1000)), 0)
    if retention.max_entries > 0 and before > retention.max_entries:
        excess = before - retention.max_entries
        if floor is None:
            r.xtrim(key, maxlen=retention.max_entries, approximate=False)
        elif retention.reads:
            # only what every reading group has read may go: the oldest `excess` below the floor
            entries = r.xrange(key, min="-", max="(" + _text(floor), count=min(excess, TRIM_BATCH))
            if entries:
                by_len = _after(_parse(entries[-1][0]))
                cut = by_len if cut is None else max(cut, by_len)
    if cut is not None:
        if floor is not None:
            cut = min(cut, floor)
        r.xtrim(key, minid=_text(cut), approximate=False)
    length = int(r.xlen(key))
    # what is left past the age bound can only be unread: its age is the oldest unread message's
    oldest_age = max(0.0, now - floor[0] / 1000) if floor is not None and length else 0.0
    return TrimResult(queue, length, before - length, held if floor is not None else (), retention, oldest_age)


class Trimmer:
    """Trims each queue's stream at most every ``retention.every_seconds`` on behalf of a sender,
    logging the backlog warning at most every ``WARN_EVERY_SECONDS`` per queue. A role whose
    Redis user may not trim (an ACL from before retention) sends on and says so once."""

    def __init__(self, retention: Retention) -> None:
        self.retention = retention
        self._last: dict[str, float] = {}
        self._warned: dict[str, float] = {}
        self._refused = False

    def maybe_trim(self, r: Any, key: str, queue: str) -> TrimResult | None:
        if self._refused:
            return None
        mono = time.monotonic()
        if mono - self._last.get(queue, -1e18) < self.retention.every_seconds:
            return None
        self._last[queue] = mono
        try:
            result = trim_stream(r, key, queue, self.retention)
        except redis.exceptions.NoPermissionError as exc:
            self._refused = True
            log.warning(
                "queue %s is not trimmed: this role's Redis user may not (%s); render the ACL file again "
                "(rqp redis-acl render) and restart Redis",
                queue,
                exc,
            )
            return None
        except redis.exceptions.RedisError as exc:
            # the message is sent; a trim that failed is tried again on a later send
            log.warning("queue %s: trimming to its retention failed, tried again later: %s", queue, exc)
            return None
        warning = result.warning
        if warning and mono - self._warned.get(queue, -1e18) >= WARN_EVERY_SECONDS:
            self._warned[queue] = mono
            log.warning("%s", warning)
        return result
