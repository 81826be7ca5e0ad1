"""Line charts as inline SVG: no script, no external asset, readable offline and in an archive.

Each chart shares the report's time axis, so charts of different VMs line up. A gap of more than
``GAP_FACTOR`` typical steps breaks the line instead of drawing a slope across a logger outage.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from html import escape
from itertools import pairwise
from statistics import median

from .fmt import RATE_FLOOR, axis_labeler
from .marks import WorkloadMark
from .series import Chart

__all__ = ["HEIGHT", "WIDTH", "axis_range", "axis_step", "render_chart"]

WIDTH = 880
HEIGHT = 230
MARGIN_LEFT = 78
MARGIN_RIGHT = 16
MARGIN_TOP = 26
MARGIN_BOTTOM = 40
X_TICKS = 6
Y_TICKS = 4
GAP_FACTOR = 3.0
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
MARK_START_COLOR = "#2e7d32"
MARK_END_COLOR = "#c62828"


def _nice_step(span: float, ticks: int) -> float:
    raw = span / max(ticks, 1)
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def axis_step(top: float, unit: str) -> float:
    """Tick spacing: round decimal numbers, or round binary multiples for bytes (so labels read
    1 MiB/s, 2 MiB/s rather than 0.95 MiB/s, 1.9 MiB/s)."""
    if unit != "B/s":
        return _nice_step(top, Y_TICKS)
    scale = 1.0
    while top / scale >= 1024:
        scale *= 1024
    return _nice_step(top / scale, Y_TICKS) * scale


def axis_range(chart: Chart) -> tuple[float, float]:
    """The y axis's top and tick step: the chart's fixed maximum (CPU's 100%), or its data's
    rounded up to a whole step -- for a byte rate at least ``RATE_FLOOR``."""
    if chart.y_max is not None:
        return chart.y_max, axis_step(chart.y_max, chart.unit)
    top = max((v for s in chart.series for _, v in s.points), default=0.0)
    top = max(top, RATE_FLOOR if chart.unit == "B/s" else 1.0)
    step = axis_step(top, chart.unit)
    return step * math.ceil(top / step - 1e-9), step


def _time_step(span_s: float) -> float:
    for step in (
        1,
        5,
        10,
        15,
        30,
        60,
        120,
        300,
        600,
        900,
        1800,
        3600,
        7200,
        10800,
        21600,
        43200,
        86400,
        172800,
        604800,
    ):
        if span_s / step <= X_TICKS:
            return float(step)
    return 604800.0 * math.ceil(span_s / (604800.0 * X_TICKS))


def _time_label(dt: datetime, span_s: float) -> str:
    if span_s > 2 * 86400:
        return dt.strftime("%m-%d %H:%M")
    if span_s < 300:
        return dt.strftime("%H:%M:%S")
    return dt.strftime("%H:%M")


def _segments(points: list[tuple[datetime, float]]) -> list[list[tuple[datetime, float]]]:
    if len(points) < 3:
        return [points] if points else []
    steps = [(b[0] - a[0]).total_seconds() for a, b in pairwise(points)]
    limit = GAP_FACTOR * max(median(steps), 1e-9)
    segs, cur = [], [points[0]]
    for step, p in zip(steps, points[1:], strict=True):
        if step > limit:
            segs.append(cur)
            cur = []
        cur.append(p)
    segs.append(cur)
    return segs


def render_chart(
    chart: Chart, x0: datetime, x1: datetime, marks: list[WorkloadMark], *, title: str | None = None
) -> str:
    x0, x1 = x0.astimezone(UTC), x1.astimezone(UTC)
    if x1 <= x0:
        x0, x1 = x0 - timedelta(seconds=30), x0 + timedelta(seconds=30)
    span = (x1 - x0).total_seconds()
    pw, ph = WIDTH - MARGIN_LEFT - MARGIN_RIGHT, HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    top, step = axis_range(chart)
    label = axis_labeler(top, step, chart.unit)

    def X(t: datetime) -> float:
        return MARGIN_LEFT + pw * (t - x0).total_seconds() / span

    def Y(v: float) -> float:
        return MARGIN_TOP + ph * (1 - min(max(v, 0.0), top) / top)

    title = title or chart.title
    out = [
        f'<svg class="chart chart-{escape(chart.key)}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{MARGIN_LEFT}" y="16" class="ctitle">{escape(title)}</text>',
        f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{pw}" height="{ph}" class="plot"/>',
    ]
    # y grid and labels
    v = 0.0
    while v <= top + 1e-9:
        y = Y(v)
        out.append(f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{MARGIN_LEFT + pw}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{MARGIN_LEFT - 6}" y="{y + 4:.1f}" class="ylab">{escape(label(v))}</text>')
        v += step
    # x grid and labels (UTC)
    tstep = _time_step(span)
    first = math.ceil(x0.timestamp() / tstep) * tstep
    t = first
    while t <= x1.timestamp() + 1e-6:
        dt = datetime.fromtimestamp(t, tz=UTC)
        x = X(dt)
        out.append(f'<line x1="{x:.1f}" y1="{MARGIN_TOP}" x2="{x:.1f}" y2="{MARGIN_TOP + ph}" class="grid"/>')
        out.append(f'<text x="{x:.1f}" y="{MARGIN_TOP + ph + 16}" class="xlab">{escape(_time_label(dt, span))}</text>')
        t += tstep
    out.append(f'<text x="{MARGIN_LEFT + pw}" y="{HEIGHT - 4}" class="xunit">UTC</text>')
    # workload marks: a band while it ran, a line at start and at finish
    for m in marks:
        s = max(m.start, x0)
        e = min(m.end or x1, x1)
        if e < x0 or s > x1:
            continue
        out.append(
            f'<rect x="{X(s):.1f}" y="{MARGIN_TOP}" width="{max(X(e) - X(s), 0.5):.1f}" height="{ph}" class="band">'
            f"<title>{escape(m.name)}</title></rect>"
        )
        if x0 <= m.start <= x1:
            xs = X(m.start)
            out.append(
                f'<line x1="{xs:.1f}" y1="{MARGIN_TOP}" x2="{xs:.1f}" y2="{MARGIN_TOP + ph}" class="mark mark-start" '
                f'stroke="{MARK_START_COLOR}" data-mark="{escape(m.name)}"/>'
            )
            out.append(f'<text x="{xs + 3:.1f}" y="{MARGIN_TOP + 11}" class="mlab">{escape(m.name)} start</text>')
        if m.end is not None and x0 <= m.end <= x1:
            xe = X(m.end)
            out.append(
                f'<line x1="{xe:.1f}" y1="{MARGIN_TOP}" x2="{xe:.1f}" y2="{MARGIN_TOP + ph}" class="mark mark-end" '
                f'stroke="{MARK_END_COLOR}" data-mark="{escape(m.name)}"/>'
            )
            out.append(f'<text x="{xe - 3:.1f}" y="{MARGIN_TOP + 24}" class="mlab end">{escape(m.name)} finish</text>')
    # series
    legend_x = MARGIN_LEFT + 7.5 * len(title) + 16  # after the title (13 px bold ≈ 7.5 px a character)
    for i, series in enumerate(chart.series):
        color = PALETTE[i % len(PALETTE)]
        for seg in _segments(series.points):
            if len(seg) == 1:
                ((t1, v1),) = seg
                out.append(f'<circle cx="{X(t1):.1f}" cy="{Y(v1):.1f}" r="2.5" fill="{color}"/>')
                continue
            pts = " ".join(f"{X(tt):.1f},{Y(vv):.1f}" for tt, vv in seg)
            out.append(
                f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.6" data-series="{escape(series.label)}"/>'
            )
        out.append(f'<rect x="{legend_x:.0f}" y="8" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{legend_x + 14:.0f}" y="17" class="legend">{escape(series.label)}</text>')
        legend_x += 24 + 7 * len(series.label)
    if chart.empty:
        out.append(f'<text x="{MARGIN_LEFT + pw / 2}" y="{MARGIN_TOP + ph / 2}" class="nodata">no data</text>')
    out.append("</svg>")
    return "\n".join(out)
