"""One cycle: read every source, store (through the spool), publish a summary. And the loop.

The loop is also what a processor embeds to report its own host (``start_background``): the same
samples, store and queue as the standalone ``rqp-metrics-logger``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rqp.errors import RqpError

from .backlog import BacklogPublisher, BacklogResult
from .publisher import Summary, SummaryPublisher, summarize
from .sources import Collection, Source
from .spool import FlushResult, Spool

__all__ = ["CycleResult", "MetricsLogger"]

log = logging.getLogger("rqp.metrics")

#: how long ``stop()`` waits for a background logger's final flush
STOP_TIMEOUT_SECONDS = 30.0


@dataclass
class CycleResult:
    summary: Summary
    flush: FlushResult
    #: sources that failed entirely this cycle (bad credentials, missing resource group)
    source_errors: list[RqpError] = field(default_factory=list)
    published: int = 0
    #: the backlog metric sent to Azure Monitor this cycle (None: not configured)
    backlog: BacklogResult | None = None


class MetricsLogger:
    def __init__(
        self,
        sources: Sequence[Source],
        spool: Spool,
        publisher: SummaryPublisher | None = None,
        *,
        backlog: BacklogPublisher | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.sources = list(sources)
        self.spool = spool
        self.publisher = publisher
        self.backlog = backlog
        self._clock = clock or (lambda: datetime.now(UTC))
        self.cycles = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> CycleResult:
        self.cycles += 1
        started = self._clock()
        collected = Collection()
        errors: list[RqpError] = []
        for source in self.sources:
            try:
                collected.extend(source.collect())
            except RqpError as exc:
                # one source's misconfiguration must not cost the other source's samples
                errors.append(exc)
                collected.warnings.append(f"{source.name}: {exc}")
                log.error("%s source failed: %s", source.name, exc)
        for w in collected.warnings:
            log.warning("%s", w)
        self.spool.add(collected.samples)
        flushed = self.spool.flush()
        warnings = list(collected.warnings)
        backlog = self.backlog.publish() if self.backlog is not None else None
        if backlog is not None and backlog.error:
            warnings.append(f"backlog metric: {backlog.error}")
        if self.publisher is not None and self.publisher.last_error:
            warnings.append(f"metrics queue was unavailable: {self.publisher.last_error}")
        summary = Summary(
            cycle=self.cycles,
            started=started,
            finished=self._clock(),
            sources=[s.name for s in self.sources],
            samples_read=len(collected.samples),
            stored=flushed.stored,
            spooled=flushed.spooled,
            dropped=flushed.dropped,
            blobs=flushed.blobs,
            per_vm=summarize(collected.samples),
            warnings=warnings,
            storage_error=flushed.error,
        )
        published = self.publisher.publish(summary) if self.publisher is not None else 0
        log.info(
            "cycle %d: read %d samples, stored %d in %d blobs, %d spooled%s",
            self.cycles,
            summary.samples_read,
            flushed.stored,
            len(flushed.blobs),
            flushed.spooled,
            f" (storage: {flushed.error})" if flushed.error else "",
        )
        return CycleResult(summary, flushed, errors, published, backlog)

    def run_forever(self, interval: float, stop: threading.Event | None = None) -> None:
        """Cycles every ``interval`` seconds (measured start to start) until ``stop`` is set; a
        last flush then tries to store what is still spooled."""
        stop = stop or self._stop
        next_start = time.monotonic()
        while not stop.is_set():
            self.run_once()
            next_start += interval
            delay = next_start - time.monotonic()
            if delay < 0:  # a cycle longer than the interval: start the next now, do not pile up
                next_start = time.monotonic()
                delay = 0
            stop.wait(delay)
        if len(self.spool):
            final = self.spool.flush()
            if final.spooled:
                log.error("stopping with %d samples that could not be stored: %s", final.spooled, final.error)

    # ------------------------------------------------------------------ embedding
    def start_background(self, interval: float) -> threading.Thread:
        """Run the loop in a daemon thread (a processor reporting its own host)."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run_forever, args=(interval, self._stop), name="rqp-metrics", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def close(self) -> None:
        for s in self.sources:
            s.close()
        if self.backlog is not None:
            self.backlog.close()
