"""The backlog metric: queued records, per processor, and the processors they want, published
each cycle to Azure Monitor as custom metrics so the scale set's autoscale follows the work.

The numbers are ``rqp fleet``'s (``rqp.cli.fleet``: one definition, one formula), read from
Redis with read-only rights. The metric names and namespace below are what the ARM template's
autoscale rules name (``compose/azure/azuredeploy.json``; a test holds them together).

A failure here (Redis, Azure Monitor) costs this cycle's values and a warning in its summary,
never the samples or the logger: the next cycle sends fresh values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from rqp.cli.fleet import FleetSettings, Recommendation, read_backlog, recommend
from rqp.errors import RqpError

from .custom_metrics import CustomMetricsClient

__all__ = [
    "BACKLOG_METRICS",
    "BACKLOG_NAMESPACE",
    "QUEUED_RECORDS",
    "QUEUED_RECORDS_PER_PROCESSOR",
    "WANTED_PROCESSORS",
    "BacklogPublisher",
    "BacklogResult",
]

log = logging.getLogger("rqp.metrics.backlog")

#: the custom metric namespace in Azure Monitor (the autoscale rules' ``metricNamespace``)
BACKLOG_NAMESPACE = "rqp"
#: records of running workloads enqueued and not finished
QUEUED_RECORDS = "QueuedRecords"
#: the same over the processors registered on the RQ queue (over 1 when there are none): what
#: the autoscale rules compare with one processor's share
QUEUED_RECORDS_PER_PROCESSOR = "QueuedRecordsPerProcessor"
#: ``rqp fleet``'s answer under this logger's RQP_FLEET_* settings
WANTED_PROCESSORS = "WantedProcessors"
BACKLOG_METRICS = (QUEUED_RECORDS, QUEUED_RECORDS_PER_PROCESSOR, WANTED_PROCESSORS)


@dataclass
class BacklogResult:
    recommendation: Recommendation | None
    sent: int
    error: str | None = None


class BacklogPublisher:
    def __init__(
        self,
        r: redis.Redis,
        rq_queue: str,
        client: CustomMetricsClient,
        fleet: FleetSettings | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.r = r
        self.rq_queue = rq_queue
        self.client = client
        self.fleet = fleet or FleetSettings()
        self._clock = clock or (lambda: datetime.now(UTC))

    def publish(self) -> BacklogResult:
        """Read the backlog and send its three values; errors are returned (and logged), not raised."""
        try:
            rec = recommend(read_backlog(self.r, self.rq_queue), self.fleet)
        except (redis.RedisError, OSError) as exc:
            why = " ".join(str(exc).split()) or type(exc).__name__
            log.warning("backlog not read from Redis: %s", why)
            return BacklogResult(None, 0, f"backlog not read from Redis ({why}); check RQP_METRICS_BACKLOG_REDIS_URL")
        at = self._clock()
        values = {
            QUEUED_RECORDS: float(rec.backlog.queued),
            QUEUED_RECORDS_PER_PROCESSOR: round(rec.backlog.per_processor, 3),
            WANTED_PROCESSORS: float(rec.wanted),
        }
        sent = 0
        for name, value in values.items():
            try:
                self.client.send(name, value, at)
            except RqpError as exc:
                log.warning("backlog metric %s not sent: %s", name, exc)
                return BacklogResult(rec, sent, str(exc))
            sent += 1
        return BacklogResult(rec, sent)

    def close(self) -> None:
        self.client.close()
