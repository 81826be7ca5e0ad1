"""The report as one self-contained HTML file: inline CSS and SVG, nothing fetched, no script,
so it can be mailed, archived next to a workload's results, or opened on an offline network."""

from __future__ import annotations

from datetime import datetime
from html import escape

from .fmt import human_bytes, pct, utc
from .marks import WorkloadMark
from .series import VmStats, VmView
from .svg import render_chart

__all__ = ["SUMMARY_COLUMNS", "render_html", "summary_cells"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:940px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #ddd}
p.meta{color:#555;margin:2px 0}
table{border-collapse:collapse;font-size:13px;margin:10px 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}
svg.chart{display:block;margin:6px 0 14px;font-size:11px}
.plot{fill:#fcfcfc;stroke:#bbb}.grid{stroke:#e6e6e6}
.ylab{text-anchor:end;fill:#555}.xlab{text-anchor:middle;fill:#555}.xunit{text-anchor:end;fill:#888}
.ctitle{font-weight:600;font-size:13px}.legend{fill:#333}.nodata{text-anchor:middle;fill:#999}
.band{fill:#2e7d32;fill-opacity:.06}.mark{stroke-width:1.5;stroke-dasharray:5 3}
.mlab{fill:#2e7d32;font-size:10px}.mlab.end{fill:#c62828;text-anchor:end}
ul.warn{color:#8a4b00;font-size:13px}
"""

SUMMARY_COLUMNS = (
    "VM",
    "source",
    "samples",
    "CPU avg %",
    "CPU max %",
    "net in",
    "net out",
    "disk read",
    "disk write",
    "warnings",
)


def summary_cells(row: VmStats) -> list[str]:
    return [
        row.vm,
        row.source,
        str(row.samples),
        pct(row.cpu_avg),
        pct(row.cpu_max),
        human_bytes(row.net_in),
        human_bytes(row.net_out),
        human_bytes(row.disk_read),
        human_bytes(row.disk_write),
        str(row.warnings),
    ]


def render_html(
    views: list[VmView],
    stats: list[VmStats],
    marks: list[WorkloadMark],
    *,
    since: datetime,
    until: datetime,
    x0: datetime,
    x1: datetime,
    location: str,
    generated: datetime,
) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>rqp metrics report {escape(utc(since))} to {escape(utc(until))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>rqp metrics report</h1>",
        f'<p class="meta">Window: {escape(utc(since))} to {escape(utc(until))} &middot; {len(views)} VM(s) &middot; '
        f"samples from {escape(location)} &middot; generated {escape(utc(generated))}</p>",
        "<h2>Summary</h2>",
        '<table class="summary"><thead><tr>'
        + "".join(f"<th>{escape(c)}</th>" for c in SUMMARY_COLUMNS)
        + "</tr></thead><tbody>",
    ]
    for row in stats:
        parts.append(
            '<tr data-vm="'
            + escape(row.vm)
            + '">'
            + "".join(f"<td>{escape(c)}</td>" for c in summary_cells(row))
            + "</tr>"
        )
    parts.append("</tbody></table>")
    if marks:
        parts.append(
            '<h2>Workloads</h2><table class="marks"><thead><tr><th>workload</th><th>start</th><th>finish</th></tr></thead><tbody>'
        )
        for m in marks:
            parts.append(
                f"<tr><td>{escape(m.name)}</td><td>{escape(utc(m.start))}</td><td>{escape(utc(m.end) if m.end else 'running')}</td></tr>"
            )
        parts.append("</tbody></table>")
    for view in views:
        parts.append(f'<section class="vm" data-vm="{escape(view.vm)}"><h2>{escape(view.vm)}</h2>')
        parts.append(f'<p class="meta">source: {escape(", ".join(view.sources))}</p>')
        if view.warnings:
            parts.append('<ul class="warn">' + "".join(f"<li>{escape(w)}</li>" for w in view.warnings) + "</ul>")
        for chart in view.charts:
            parts.append(render_chart(chart, x0, x1, marks, title=f"{view.vm} · {chart.title} ({chart.unit})"))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
