"""``rqp metrics report``: stored samples → an HTML page (and PNGs) plus a summary table.

The shared ``rqp`` CLI registers this with ``add_report_command(metrics_subparsers)`` and calls
``run_report(args)``; ``rqp-metrics-logger report`` and ``python -m rqp_metrics.report`` run the
same code. Errors are ``RqpError``s (one line); the calling CLI prints them.

    rqp metrics report --since 1h --html report.html --mark w1=2026-11-24T10:00:00Z,2026-11-24T10:20:00Z

The workloads rqp recorded in Redis (``RQP_REDIS_URL``) are marked without ``--mark``; when Redis
does not answer, the report says so in one line and is written unmarked.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import redis

from rqp.config import Settings
from rqp.connect import connect_redis, open_blob_store
from rqp.errors import ConfigError, RqpError

from .fmt import utc
from .html_page import SUMMARY_COLUMNS, render_html, summary_cells
from .marks import WorkloadMark, collect_marks, merge_marks, redis_marks
from .sample import parse_ts
from .series import VmStats, build_stats, build_views
from .store import SampleStore

__all__ = [
    "DEFAULT_HTML",
    "DEFAULT_SINCE",
    "ReportOutput",
    "add_metrics_command",
    "add_report_command",
    "build_report",
    "format_table",
    "parse_since",
    "recorded_marks",
    "run_report",
]

DEFAULT_SINCE = "1h"
DEFAULT_HTML = "rqp-metrics-report.html"
_DURATION_RE = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_since(text: str, now: datetime) -> datetime:
    """``90s``, ``15m``, ``1h30m``, ``2d``, ``1w`` ago, or an ISO-8601 time."""
    t = text.strip().lower()
    m = _DURATION_RE.match(t)
    if t and m and any(m.groups()):
        w, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
        return now - timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)
    try:
        return parse_ts(text)
    except ValueError:
        raise ConfigError(
            f"--since/--until {text!r} is neither a duration (15m, 1h, 2d) nor an ISO-8601 time"
        ) from None


def add_metrics_command(subparsers: argparse._SubParsersAction) -> None:
    """``rqp metrics ...``: registered on the shared CLI through the ``rqp.commands`` entry point."""
    metrics = subparsers.add_parser("metrics", help="VM metrics recorded by rqp-metrics-logger")
    add_report_command(metrics.add_subparsers(dest="metrics_cmd", required=True))


def add_report_command(subparsers: Any, name: str = "report") -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help="charts and a summary table of stored VM metrics",
        description="Render stored metrics samples as a self-contained HTML page (inline SVG) and/or PNG charts, "
        "and print a summary table per VM.",
    )
    p.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        help="start of the window: a duration ago (15m, 1h, 2d) or an ISO-8601 time (default: 1h)",
    )
    p.add_argument("--until", default=None, help="end of the window: a duration ago or an ISO-8601 time (default: now)")
    p.add_argument("--vm", action="append", default=None, metavar="NAME", help="only this VM (repeatable)")
    p.add_argument(
        "--html", default=DEFAULT_HTML, metavar="FILE", help=f"write the HTML page here (default: {DEFAULT_HTML})"
    )
    p.add_argument("--no-html", action="store_true", help="do not write the HTML page")
    p.add_argument("--png", default=None, metavar="DIR", help="also write one PNG per VM into DIR (needs matplotlib)")
    p.add_argument(
        "--workload-marks",
        action="append",
        default=None,
        metavar="FILE",
        help="JSON file of workload start/finish times to mark",
    )
    p.add_argument(
        "--mark",
        action="append",
        default=None,
        metavar="NAME=START[,END]",
        help="mark one workload (ISO-8601 times; repeatable)",
    )
    p.add_argument(
        "--no-redis-marks",
        action="store_true",
        help="do not mark the workloads rqp recorded in Redis (default: they are marked when RQP_REDIS_URL answers)",
    )
    # SUPPRESS: a parent parser's own --blob-url (rqp-metrics-logger has one) is not overwritten
    p.add_argument("--blob-url", default=argparse.SUPPRESS, help="where the samples are (default: RQP_BLOB_URL)")
    p.set_defaults(func=run_report)
    return p


class ReportOutput:
    def __init__(self, html: str | None, stats: list[VmStats], samples: int, files: list[Path]) -> None:
        self.html = html
        self.stats = stats
        self.samples = samples
        self.files = files


def format_table(stats: list[VmStats]) -> str:
    rows = [list(SUMMARY_COLUMNS)] + [summary_cells(r) for r in stats]
    widths = [max(len(r[i]) for r in rows) for i in range(len(SUMMARY_COLUMNS))]
    lines = []
    for n, r in enumerate(rows):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def build_report(
    store: SampleStore,
    since: datetime,
    until: datetime,
    *,
    vms: Sequence[str] | None = None,
    marks: Sequence[WorkloadMark] = (),
    html_path: Path | None = None,
    png_dir: Path | None = None,
    now: datetime | None = None,
) -> ReportOutput:
    """Read, render and write; returns what it made. Raises ``ConfigError`` for an empty window."""
    if until <= since:
        raise ConfigError(f"report window is empty: --since {utc(since)} is not before --until {utc(until)}")
    read = store.read(since, until, vms)
    if not read.samples:
        raise ConfigError(
            f"no metrics samples between {utc(since)} and {utc(until)} in {store.location}; "
            f"is rqp-metrics-logger running with the same RQP_BLOB_URL, and is --since long enough?"
        )
    views = build_views(read.samples)
    stats = build_stats(read.samples)
    marks = list(marks)
    # one time axis for every chart: the data, widened to show marks that fall in the window
    times = [s.ts for s in read.samples]
    times += [t for m in marks for t in (m.start, m.end) if t is not None and since <= t <= until]
    x0, x1 = min(times), max(times)
    files: list[Path] = []
    html = render_html(
        views,
        stats,
        marks,
        since=since,
        until=until,
        x0=x0,
        x1=x1,
        location=store.location,
        generated=now or datetime.now(UTC),
    )
    if html_path is not None:
        try:
            html_path.parent.mkdir(parents=True, exist_ok=True)
            html_path.write_text(html, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot write the HTML report to {html_path} ({exc.strerror}); choose another --html path"
            ) from None
        files.append(html_path)
    if png_dir is not None:
        from .png import render_pngs  # noqa: PLC0415 - matplotlib only when asked

        files.extend(render_pngs(views, marks, png_dir, x0, x1))
    return ReportOutput(html, stats, len(read.samples), files)


def recorded_marks(settings: Settings, since: datetime, until: datetime) -> tuple[list[WorkloadMark], str | None]:
    """The workloads rqp recorded in Redis in the window, or why they could not be read (the
    report is still written: marks are a help, not its content)."""
    try:
        r = connect_redis(settings)
    except RqpError as exc:
        return [], str(exc)
    try:
        return redis_marks(r, since, until), None
    except redis.RedisError as exc:
        return [], f"Redis at {settings.redis_url_safe} answered {str(exc).splitlines()[0]}"
    finally:
        r.close()


def run_report(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    now = datetime.now(UTC)
    since = parse_since(getattr(args, "since", None) or DEFAULT_SINCE, now)
    until = parse_since(args.until, now) if getattr(args, "until", None) else now
    marks = collect_marks(getattr(args, "workload_marks", None), getattr(args, "mark", None))
    settings = Settings.load(getattr(args, "config", None))
    if not getattr(args, "no_redis_marks", False):
        recorded, why_not = recorded_marks(settings, since, until)
        marks = merge_marks(marks, recorded)
        if why_not:
            print(f"workloads not marked from Redis: {why_not}; give them with --mark NAME=START,END", file=out)
    blob_url = getattr(args, "blob_url", None) or settings.blob_url
    store = SampleStore(open_blob_store(blob_url))
    html_path = None if getattr(args, "no_html", False) else Path(getattr(args, "html", None) or DEFAULT_HTML)
    png_dir = Path(args.png) if getattr(args, "png", None) else None
    report = build_report(
        store, since, until, vms=getattr(args, "vm", None), marks=marks, html_path=html_path, png_dir=png_dir, now=now
    )
    print(
        f"metrics {utc(since)} to {utc(until)}: {report.samples} samples, {len(report.stats)} VM/source row(s)",
        file=out,
    )
    print(format_table(report.stats), file=out)
    for m in marks:
        print(f"workload {m.name}: start {utc(m.start)}, finish {utc(m.end) if m.end else 'running'}", file=out)
    for f in report.files:
        print(f"wrote {f}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rqp_metrics")
    sub = parser.add_subparsers(dest="command", required=True)
    add_report_command(sub)
    args = parser.parse_args(["report", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except RqpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
