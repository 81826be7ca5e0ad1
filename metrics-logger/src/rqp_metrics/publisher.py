"""One summary message per cycle on the metrics queue, for alerting and monitoring systems.

The samples themselves are in the blob store (where rqp-console's VMs page reads them, with this
package's own code); the message says what a cycle read and stored, per VM, and what went wrong. A queue outage must not stop the logger: unsent summaries are held (a
few, newest kept) and sent before the next one, and the failure is reported in the next summary.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis

from rqp.errors import StorageError
from rqp.storage import MessageQueue

from .sample import COLLECTOR_WARNING, CPU_PERCENT, NET_IN_BYTES, NET_OUT_BYTES, Sample, format_ts

__all__ = ["MAX_HELD_SUMMARIES", "SUMMARY_KIND", "Summary", "SummaryPublisher", "summarize"]

log = logging.getLogger("rqp.metrics.publisher")

SUMMARY_KIND = "rqp-metrics-batch"
SUMMARY_VERSION = 1
#: summaries kept while the queue is down; older ones are dropped (the samples are safe in storage)
MAX_HELD_SUMMARIES = 100
#: blob names listed in one message at most (the count is always exact)
MAX_BLOB_NAMES = 50
MAX_WARNINGS = 20
#: what a queue backend raises when it is unreachable (the Redis backend does not wrap these)
QUEUE_ERRORS: tuple[type[BaseException], ...] = (StorageError, redis.RedisError, OSError)


@dataclass
class Summary:
    cycle: int
    started: datetime
    finished: datetime
    sources: list[str]
    samples_read: int
    stored: int
    spooled: int
    dropped: int
    blobs: list[str]
    per_vm: dict[str, dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    storage_error: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> bytes:
        body = {
            "v": SUMMARY_VERSION,
            "kind": SUMMARY_KIND,
            "id": self.id,
            "cycle": self.cycle,
            "started": format_ts(self.started),
            "finished": format_ts(self.finished),
            "sources": self.sources,
            "samples_read": self.samples_read,
            "stored": self.stored,
            "spooled": self.spooled,
            "dropped": self.dropped,
            "blob_count": len(self.blobs),
            "blobs": self.blobs[:MAX_BLOB_NAMES],
            "vms": self.per_vm,
            "warning_count": len(self.warnings),
            "warnings": [w[:300] for w in self.warnings[:MAX_WARNINGS]],
            "storage_error": self.storage_error,
        }
        return json.dumps(body, separators=(",", ":")).encode()


def summarize(samples: list[Sample]) -> dict[str, dict[str, Any]]:
    """Per VM: how many samples this cycle, the latest CPU %, bytes in/out read this cycle."""
    per: dict[str, dict[str, Any]] = {}
    for s in samples:
        d = per.setdefault(s.vm, {"samples": 0})
        d["samples"] += 1
        if s.metric == CPU_PERCENT:
            d["cpu_percent"] = round(s.value, 2)
        elif s.metric in (NET_IN_BYTES, NET_OUT_BYTES):
            d[s.metric] = d.get(s.metric, 0) + int(s.value)
        elif s.metric == COLLECTOR_WARNING:
            d["warnings"] = d.get("warnings", 0) + 1
    return per


class SummaryPublisher:
    def __init__(self, queue: MessageQueue, queue_name: str) -> None:
        self.queue = queue
        self.queue_name = queue_name
        self._held: deque[bytes] = deque(maxlen=MAX_HELD_SUMMARIES)
        self.last_error: str | None = None

    @property
    def held(self) -> int:
        return len(self._held)

    def publish(self, summary: Summary) -> int:
        """Send held summaries and this one, oldest first; returns how many were sent. A queue
        outage is logged and remembered (``last_error``), not raised: the samples are already stored."""
        self._held.append(summary.to_json())
        sent = 0
        while self._held:
            try:
                self.queue.send(self.queue_name, self._held[0])
            except QUEUE_ERRORS as exc:
                self.last_error = " ".join(str(exc).split()) or type(exc).__name__
                log.warning(
                    "metrics queue %s unavailable, %d summaries held: %s",
                    self.queue_name,
                    len(self._held),
                    self.last_error,
                )
                return sent
            self._held.popleft()
            sent += 1
        self.last_error = None
        return sent
