"""Stored samples → what a report shows: chart series per VM and a summary row per VM and source.

Byte counters are stored as deltas over ``period`` seconds (so totals add up exactly) and charted
as rates (bytes per second), which stay comparable when the logger's interval changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from .sample import (
    COLLECTOR_WARNING,
    CPU_PERCENT,
    DISK_READ_BYTES,
    DISK_WRITE_BYTES,
    MEM_PERCENT,
    NET_IN_BYTES,
    NET_OUT_BYTES,
    Sample,
)

__all__ = ["CHARTS", "Chart", "Series", "VmStats", "VmView", "build_stats", "build_views"]


@dataclass
class Series:
    label: str
    points: list[tuple[datetime, float]] = field(default_factory=list)


@dataclass
class Chart:
    key: str
    title: str
    #: "%" or "B/s": decides axis labels
    unit: str
    series: list[Series]
    #: a fixed top of the y axis (CPU: 100), else scaled to the data
    y_max: float | None = None

    @property
    def empty(self) -> bool:
        return not any(s.points for s in self.series)


@dataclass
class VmView:
    vm: str
    sources: list[str]
    charts: list[Chart]
    warnings: list[str]


@dataclass
class VmStats:
    vm: str
    source: str
    samples: int = 0
    cpu_avg: float | None = None
    cpu_max: float | None = None
    mem_max: float | None = None
    net_in: float = 0.0
    net_out: float = 0.0
    disk_read: float = 0.0
    disk_write: float = 0.0
    warnings: int = 0
    first: datetime | None = None
    last: datetime | None = None


#: chart key → (title, unit, fixed y max, [(metric, label, as rate)])
CHARTS: dict[str, tuple[str, str, float | None, list[tuple[str, str, bool]]]] = {
    "cpu": ("CPU", "%", 100.0, [(CPU_PERCENT, "CPU %", False)]),
    "net": ("Network", "B/s", None, [(NET_IN_BYTES, "in", True), (NET_OUT_BYTES, "out", True)]),
    "disk": ("Disk", "B/s", None, [(DISK_READ_BYTES, "read", True), (DISK_WRITE_BYTES, "write", True)]),
}


def _point_value(s: Sample, as_rate: bool) -> float | None:
    if not as_rate:
        return s.value
    if not s.period:
        return None
    return s.value / s.period


def build_views(samples: Iterable[Sample]) -> list[VmView]:
    by_vm: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_vm[s.vm].append(s)
    views = []
    for vm in sorted(by_vm):
        vm_samples = sorted(by_vm[vm], key=lambda s: s.ts)
        sources = sorted(
            {s.source for s in vm_samples if s.metric != COLLECTOR_WARNING} or {s.source for s in vm_samples}
        )
        many = len(sources) > 1
        charts = []
        for key, (title, unit, y_max, metrics) in CHARTS.items():
            series = []
            for metric, label, as_rate in metrics:
                for source in sources:
                    pts = [
                        (s.ts, v)
                        for s in vm_samples
                        if s.metric == metric and s.source == source and (v := _point_value(s, as_rate)) is not None
                    ]
                    series.append(Series(f"{label} ({source})" if many else label, pts))
            charts.append(Chart(key, title, unit, series, y_max))
        warnings = list(dict.fromkeys(s.note or s.metric for s in vm_samples if s.metric == COLLECTOR_WARNING))
        views.append(VmView(vm, sources, charts, warnings))
    return views


def build_stats(samples: Iterable[Sample]) -> list[VmStats]:
    """Per VM and source: CPU average weighted by each sample's period (the host's first sample
    covers a shorter window than the rest), maxima, and byte totals over the window."""
    rows: dict[tuple[str, str], VmStats] = {}
    cpu_sum: dict[tuple[str, str], float] = defaultdict(float)
    cpu_weight: dict[tuple[str, str], float] = defaultdict(float)
    totals = {
        NET_IN_BYTES: "net_in",
        NET_OUT_BYTES: "net_out",
        DISK_READ_BYTES: "disk_read",
        DISK_WRITE_BYTES: "disk_write",
    }
    for s in samples:
        key = (s.vm, s.source)
        row = rows.setdefault(key, VmStats(s.vm, s.source))
        if s.metric == COLLECTOR_WARNING:
            row.warnings += 1
            continue
        row.samples += 1
        row.first = s.ts if row.first is None or s.ts < row.first else row.first
        row.last = s.ts if row.last is None or s.ts > row.last else row.last
        if s.metric == CPU_PERCENT:
            w = s.period or 1.0
            cpu_sum[key] += s.value * w
            cpu_weight[key] += w
            row.cpu_max = s.value if row.cpu_max is None else max(row.cpu_max, s.value)
        elif s.metric == MEM_PERCENT:
            row.mem_max = s.value if row.mem_max is None else max(row.mem_max, s.value)
        elif s.metric in totals:
            setattr(row, totals[s.metric], getattr(row, totals[s.metric]) + s.value)
    for key, row in rows.items():
        if cpu_weight[key]:
            row.cpu_avg = cpu_sum[key] / cpu_weight[key]
    return [rows[k] for k in sorted(rows)]
