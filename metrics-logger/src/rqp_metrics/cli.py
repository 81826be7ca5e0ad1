"""``rqp-metrics-logger``: record VM health on an interval (or once), and render reports.

    rqp-metrics-logger --once                     # one cycle, then exit (cron, tests, CI)
    rqp-metrics-logger                            # every RQP_METRICS_INTERVAL seconds until SIGTERM
    rqp-metrics-logger --source both              # this host and every VM of the resource group
    rqp-metrics-logger report --since 1h          # the same as `rqp metrics report`

Exit status: 0 when every sample read was stored; the failing ``RqpError``'s code otherwise
(2 configuration, 5 storage), with one line on stderr naming the problem and the fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from rqp.config import Settings
from rqp.connect import open_blob_store, open_message_queue
from rqp.errors import RqpError, StorageUnavailableError

from . import __version__
from .backlog import BACKLOG_NAMESPACE, BacklogPublisher
from .logger import CycleResult, MetricsLogger
from .publisher import SummaryPublisher
from .report import add_report_command
from .settings import SOURCES, MetricsSettings
from .sources import Source
from .spool import Spool
from .store import SampleStore

__all__ = ["build_logger", "main"]

log = logging.getLogger("rqp.metrics")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rqp-metrics-logger",
        description="Record VM health (Azure Monitor and/or this host) to rqp storage as JSON Lines, "
        "with a summary per cycle on the metrics queue.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--config", default=None, help="rqp TOML config file (default: RQP_CONFIG)")
    p.add_argument("--once", action="store_true", help="run one cycle and exit")
    p.add_argument(
        "--interval", type=float, default=None, help="seconds between cycles (default: RQP_METRICS_INTERVAL or 60)"
    )
    p.add_argument(
        "--source", choices=SOURCES, default=None, help="host, azure or both (default: RQP_METRICS_SOURCE or host)"
    )
    p.add_argument(
        "--host-name",
        default=None,
        help="VM name for this host's samples (default: RQP_METRICS_HOST_NAME or the host name)",
    )
    p.add_argument("--blob-url", default=None, help="where samples are stored (default: RQP_BLOB_URL)")
    p.add_argument("--no-publish", action="store_true", help="store samples but send no summary to the metrics queue")
    p.add_argument(
        "--log-level",
        default=os.environ.get("RQP_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING, ERROR (default: INFO)",
    )
    sub = p.add_subparsers(dest="command")
    add_report_command(sub)
    return p


def build_logger(args: argparse.Namespace) -> tuple[MetricsLogger, MetricsSettings]:
    settings = Settings.load(args.config, blob_url=args.blob_url)
    msettings = MetricsSettings.from_env(interval=args.interval, source=args.source, host_name=args.host_name)
    sources: list[Source] = []
    if msettings.uses_host:
        from .sources.host import HostSource  # noqa: PLC0415

        sources.append(HostSource(msettings.host_name, net_dev=msettings.net_dev))
    if msettings.uses_azure:
        from .sources.azure import AzureSource  # noqa: PLC0415 - Azure SDK only when asked

        sources.append(
            AzureSource(
                msettings.azure_subscription_id or "",
                msettings.azure_resource_group or "",
                base_url=msettings.arm_url,
                lookback=msettings.azure_lookback,
            )
        )
    spool = Spool(SampleStore(open_blob_store(settings.blob_url)), msettings.spool_max_samples)
    publisher = (
        None
        if args.no_publish
        else SummaryPublisher(
            # its Redis user may append to the metrics stream and trim it, not read it
            open_message_queue(settings, reads_messages=False),
            msettings.metrics_queue,
        )
    )
    backlog = _backlog_publisher(settings, msettings) if msettings.publishes_backlog else None
    return MetricsLogger(sources, spool, publisher, backlog=backlog), msettings


def _backlog_publisher(settings: Settings, msettings: MetricsSettings) -> BacklogPublisher:
    """The backlog metric's reader and sender: Redis as a user that may read the workloads
    (RQP_METRICS_BACKLOG_REDIS_URL, else RQP_REDIS_URL), Azure Monitor's ingestion API."""
    from rqp.cli.fleet import FleetSettings  # noqa: PLC0415
    from rqp.connect import connect_redis  # noqa: PLC0415

    from .custom_metrics import CustomMetricsClient  # noqa: PLC0415

    reader = dataclasses.replace(
        settings,
        redis_url=msettings.backlog_redis_url or settings.redis_url,
        redis_password_file=(
            Path(msettings.backlog_redis_password_file)
            if msettings.backlog_redis_password_file
            else settings.redis_password_file
        ),
    )
    client = CustomMetricsClient(
        msettings.backlog_resource_id or "",
        msettings.backlog_region or "",
        namespace=BACKLOG_NAMESPACE,
        base_url=msettings.monitoring_url,
    )
    return BacklogPublisher(connect_redis(reader, check=False), settings.rq_queue, client, FleetSettings.from_env())


def _check_once(result: CycleResult, location: str) -> None:
    """``--once`` must not pretend: samples left unstored or a source that failed is an error."""
    if result.flush.spooled:
        raise StorageUnavailableError(
            f"{result.flush.spooled} metrics samples could not be stored in {location} ({result.flush.error}); "
            f"fix storage (RQP_BLOB_URL) and run again"
        )
    if result.source_errors:
        raise result.source_errors[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        if args.command == "report":
            return args.func(args)
        logger, msettings = build_logger(args)
        try:
            if args.once:
                result = logger.run_once()
                s = result.summary
                print(
                    f"cycle {s.cycle}: read {s.samples_read} samples from {', '.join(s.sources)} "
                    f"({len(s.per_vm)} VM(s)), stored {s.stored} in {len(s.blobs)} blob(s) under {logger.spool.store.location}"
                    + (
                        f", summary sent to queue {logger.publisher.queue_name}"
                        if logger.publisher and result.published
                        else ""
                    )
                    + (
                        f", backlog {result.backlog.recommendation.backlog.queued} record(s) sent to Azure Monitor"
                        if result.backlog and result.backlog.recommendation and not result.backlog.error
                        else ""
                    )
                    + (f", {len(s.warnings)} warning(s)" if s.warnings else "")
                )
                _check_once(result, logger.spool.store.location)
                return 0
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            log.info(
                "recording every %gs from %s to %s",
                msettings.interval,
                ", ".join(s.name for s in logger.sources),
                logger.spool.store.location,
            )
            logger.run_forever(msettings.interval, stop)
            return 0
        finally:
            logger.close()
    except RqpError as exc:
        print(f"rqp-metrics-logger: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
