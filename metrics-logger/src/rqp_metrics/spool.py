"""Samples read but not yet stored, kept in memory until storage takes them.

A storage outage must not lose what was already read: every cycle hands its new samples to the
spool, and the spool writes everything it holds, oldest first, one blob per date and VM. A blob
that fails stays spooled (with all blobs after it) for the next cycle. The spool is bounded: in an
outage longer than ``max_samples`` allow, the oldest samples are dropped and counted, because
running out of memory would lose them all.

A write that failed after the backend kept it (a lost response) is retried under a new name, so a
sample may be stored twice; readers drop duplicates by (VM, source, metric, time).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from rqp.errors import StorageError

from .sample import Sample
from .settings import DEFAULT_SPOOL_MAX_SAMPLES
from .store import SampleStore

__all__ = ["FlushResult", "Spool"]

log = logging.getLogger("rqp.metrics.spool")


@dataclass
class FlushResult:
    blobs: list[str] = field(default_factory=list)
    stored: int = 0
    #: still held after this flush (storage failed)
    spooled: int = 0
    #: dropped by the bound since the last flush
    dropped: int = 0
    #: the storage error that stopped this flush, one line
    error: str | None = None


class Spool:
    def __init__(self, store: SampleStore, max_samples: int = DEFAULT_SPOOL_MAX_SAMPLES) -> None:
        self.store = store
        self.max_samples = max_samples
        self._pending: deque[Sample] = deque()
        self._dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, samples: Iterable[Sample]) -> None:
        for s in samples:
            if len(self._pending) >= self.max_samples:
                self._pending.popleft()
                self._dropped += 1
            self._pending.append(s)

    def flush(self) -> FlushResult:
        """Write everything held; what fails stays held. A storage error is the expected outcome
        of an outage, so it is reported in the result (and logged), not raised."""
        result = FlushResult(dropped=self._dropped)
        if self._dropped:
            log.error(
                "spool full (%d samples): dropped the %d oldest samples during the storage outage",
                self.max_samples,
                self._dropped,
            )
        self._dropped = 0
        held = list(self._pending)
        self._pending.clear()
        groups = sorted(SampleStore.group(held).items(), key=lambda kv: (min(s.ts for s in kv[1]), kv[0][1]))
        for i, ((day, vm), samples) in enumerate(groups):
            try:
                result.blobs.append(self.store.write_group(day, vm, samples))
            except StorageError as exc:
                rest = [s for _key, group in groups[i:] for s in group]
                self._pending.extend(sorted(rest, key=lambda s: s.ts))
                result.error = str(exc)
                log.warning("storage unavailable, %d samples kept for the next cycle: %s", len(rest), exc)
                break
            result.stored += len(samples)
        result.spooled = len(self._pending)
        return result
