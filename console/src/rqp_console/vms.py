"""VM health from the metrics logger's store, for the VMs page: a fleet overview (a CPU heatmap,
every VM on one chart) and per VM CPU, memory, disk and network, with workloads marked.

The samples are read with the metrics logger's own code (``rqp_metrics.store.SampleStore``,
``rqp_metrics.series``), so the console and ``rqp metrics report`` agree on what a sample means
(byte counters are deltas over ``period``, charted as rates). Workload marks come from rqp's own
data -- each workload's ``started_at`` / ``finished_at`` in Redis -- not typed by hand. Series are
averaged into at most ``POINTS`` buckets, so a day of 12 VMs is a few hundred kilobytes of JSON.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from rqp.ledger import Meta, WorkloadKeys, workloads
from rqp_metrics.sample import CPU_PERCENT, MEM_PERCENT, MEM_USED_BYTES, Sample
from rqp_metrics.series import build_stats, build_views
from rqp_metrics.store import SampleStore

__all__ = ["POINTS", "WINDOWS", "vms_view", "workload_marks"]

#: the windows the page offers, in seconds
WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
#: points per series at most (bucket averages)
POINTS = 240
#: columns of the overview heatmap
HEAT_COLUMNS = 60
#: workloads looked at for marks (the newest)
MARK_WORKLOADS = 100
#: the shortest span a chart is drawn over, when the window holds less data than that
MIN_SPAN_SECONDS = 60.0
#: room left before the first sample, as a share of the span drawn (a line does not start on the axis)
LEAD_SHARE = 0.02


def fitted_start(window_start: float, until: float, first_sample: float | None, marks: list[dict[str, Any]]) -> float:
    """Where the charts' time axis starts: the window's start, or -- when the samples begin later
    (a logger started 4 minutes ago, a 1 h window) -- just before the first sample or the first
    workload marked, whichever is earlier, so the data fills the chart instead of a sliver of it."""
    if first_sample is None:
        return window_start
    first = min([first_sample, *(m["start"] for m in marks)])
    span = max(MIN_SPAN_SECONDS, (until - first) * (1 + LEAD_SHARE))
    return max(window_start, until - span)


def _bucket(points: list[tuple[float, float]], x0: float, x1: float, n: int) -> list[list[float]]:
    """Average ``points`` (epoch s, value) into at most ``n`` equal time buckets; a bucket with
    no point is left out (the chart breaks the line there)."""
    if len(points) <= n or x1 <= x0:
        return [[round(t, 3), round(v, 3)] for t, v in points]
    width = (x1 - x0) / n
    sums: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for t, v in points:
        b = min(n - 1, max(0, int((t - x0) / width)))
        acc = sums[b]
        acc[0] += t
        acc[1] += v
        acc[2] += 1
    return [[round(acc[0] / acc[2], 3), round(acc[1] / acc[2], 3)] for _, acc in sorted(sums.items())]


def workload_marks(r: redis.Redis, since: float, until: float) -> list[dict[str, Any]]:
    """Start and end of each recent workload that ran inside [since, until] (end None: running)."""
    ids = workloads(r, newest_first=True, limit=MARK_WORKLOADS)
    if not ids:
        return []
    pipe = r.pipeline(transaction=False)
    for wid in ids:
        pipe.hmget(WorkloadKeys(wid).meta, Meta.STARTED_AT, Meta.FINISHED_AT, Meta.STATE)
    marks = []
    for wid, (started, finished, state) in zip(ids, pipe.execute(), strict=True):
        if started is None:
            continue
        try:
            start = float(started)
            end = float(finished) if finished is not None else None
        except ValueError:
            continue
        if start > until or (end is not None and end < since):
            continue
        marks.append(
            {"name": wid, "start": start, "end": end, "state": state.decode(errors="replace") if state else None}
        )
    return sorted(marks, key=lambda m: m["start"])


def _points(samples: list[Sample], metric: str) -> list[tuple[float, float]]:
    return [(s.ts.timestamp(), s.value) for s in samples if s.metric == metric]


def vms_view(store: SampleStore, r: redis.Redis, window: str, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    until = datetime.fromtimestamp(now, UTC)
    since = until - timedelta(seconds=WINDOWS[window])
    read = store.read(since, until)
    window_start, x1 = since.timestamp(), until.timestamp()
    marks = workload_marks(r, window_start, x1)
    first = min((s.ts.timestamp() for s in read.samples), default=None)
    x0 = fitted_start(window_start, x1, first, marks)
    seconds = x1 - x0
    by_vm: dict[str, list[Sample]] = defaultdict(list)
    for s in read.samples:
        by_vm[s.vm].append(s)
    stats = {(st.vm, st.source): st for st in build_stats(read.samples)}
    # a heatmap column is at least one sample period wide, so sparse samples leave no stripes
    periods = sorted(s.period for s in read.samples if s.metric == CPU_PERCENT and s.period)
    width = max(seconds / HEAT_COLUMNS, periods[len(periods) // 2] if periods else 0.0)
    columns = max(1, min(HEAT_COLUMNS, round(seconds / width)))
    width = seconds / columns
    vms = []
    heat_rows = []
    for view in build_views(read.samples):
        samples = by_vm[view.vm]
        charts: dict[str, Any] = {}
        for chart in view.charts:
            charts[chart.key] = {
                "title": chart.title,
                "unit": chart.unit,
                "y_max": chart.y_max,
                "series": [
                    {"label": s.label, "points": _bucket([(t.timestamp(), v) for t, v in s.points], x0, x1, POINTS)}
                    for s in chart.series
                ],
            }
        mem = _points(samples, MEM_PERCENT)
        used = _points(samples, MEM_USED_BYTES)
        charts["mem"] = {
            "title": "Memory",
            "unit": "%",
            "y_max": 100.0,
            "series": [{"label": "used %", "points": _bucket(mem, x0, x1, POINTS)}],
        }
        cpu = _points(samples, CPU_PERCENT)
        cols: list[list[float]] = [[] for _ in range(columns)]
        for t, v in cpu:
            cols[min(columns - 1, max(0, int((t - x0) / width)))].append(v)
        heat_rows.append({"vm": view.vm, "cells": [round(sum(c) / len(c), 1) if c else None for c in cols]})
        st = [stats[(view.vm, src)] for src in view.sources if (view.vm, src) in stats]
        vms.append(
            {
                "vm": view.vm,
                "sources": view.sources,
                "charts": {key: charts[key] for key in ("cpu", "mem", "disk", "net") if key in charts},
                "latest": {
                    "cpu": cpu[-1][1] if cpu else None,
                    "mem": mem[-1][1] if mem else None,
                    "mem_used_bytes": used[-1][1] if used else None,
                    "at": max((s.ts.timestamp() for s in samples), default=None),
                },
                "cpu_avg": next((x.cpu_avg for x in st if x.cpu_avg is not None), None),
                "cpu_max": max((x.cpu_max for x in st if x.cpu_max is not None), default=None),
                "mem_max": max((x.mem_max for x in st if x.mem_max is not None), default=None),
                "net_bytes": sum(x.net_in + x.net_out for x in st),
                "disk_bytes": sum(x.disk_read + x.disk_write for x in st),
                "warnings": view.warnings,
            }
        )
    return {
        "window": window,
        "since": x0,
        "until": x1,
        "window_since": window_start,
        "samples": len(read.samples),
        "location": store.location,
        "marks": marks,
        "heatmap": {"columns": columns, "width": width, "rows": heat_rows},
        "vms": vms,
    }
