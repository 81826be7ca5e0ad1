"""How ``rqp`` shows things to a person: progress bars and status lines, tables, durations, ages
and times, redrawing a block in place on a terminal.

Every command formats through here, so a workload's state, a time or a table reads the same in
every command. No I/O but the terminal's width and the redraw's writes.
"""

from __future__ import annotations

import math
import shutil
import textwrap
from datetime import datetime
from typing import TextIO

from ..status import Progress

__all__ = [
    "BAR_WIDTH",
    "FINISHED_STATES",
    "Redraw",
    "clip",
    "fmt_age",
    "fmt_duration",
    "fmt_sizes",
    "format_progress",
    "format_status",
    "percent",
    "table",
    "terminal_width",
    "when",
]

BAR_WIDTH = 30
#: states in which a workload will not change any more
FINISHED_STATES = ("done", "failed", "cancelled")
#: VMs ``rqp status`` lists by what they cost (the rest are counted; ``--json`` has them all)
MAX_VMS_SHOWN = 6


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def fmt_age(seconds: float) -> str:
    """How long ago, in the largest unit or two that fit: 42s, 5m, 3h07m, 2d04h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def when(at: float | None, *, short: bool = False) -> str:
    """An epoch time in local time: ISO 8601 to the millisecond (a record's times), or ``short``,
    ``YYYY-MM-DD HH:MM:SS`` (a log's column: audit, rejected); '-' for none. The one time formatter
    of ``rqp``."""
    if at is None:
        return "-"
    local = datetime.fromtimestamp(at).astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S") if short else local.isoformat(timespec="milliseconds")


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _flow(pieces: list[str], width: int, sep: str = "  ") -> list[str]:
    """``pieces`` joined by ``sep`` into as few lines of at most ``width`` columns as they fit (a
    piece is never split; one longer than a line is clipped)."""
    lines: list[str] = []
    line = ""
    for piece in pieces:
        if line and len(line) + len(sep) + len(piece) <= width:
            line += sep + piece
            continue
        if line:
            lines.append(line)
        line = clip(piece, width)
    if line:
        lines.append(line)
    return lines


def percent(fraction: float) -> str:
    """One decimal, rounded down: 2,999 of 3,000 is 99.9%, never 100.0% before the end."""
    return f"{math.floor(fraction * 1000) / 10:.1f}%"


def _bar(fraction: float, width: int) -> str:
    filled = int(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def fmt_sizes(part: int, whole: int) -> str:
    """Two byte counts in the unit of the larger, one decimal: ``12.3/28.6 MB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if whole >= scale:
            return f"{part / scale:,.1f}/{whole / scale:,.1f} {unit}"
    return f"{part:,}/{whole:,} B"


def _progress_pieces(p: Progress) -> tuple[str, list[str], list[str]]:
    """What ``rqp status`` shows: the headline's progress (a percentage of the total, or, while the
    data is still being read and the total is unknown, how much of the data was read so far: a
    percentage of its bytes when the scheduler published them, else the records read), the
    counts by state, and rate and times."""
    finished = p.state in FINISHED_STATES
    fraction_read = p.read_fraction
    if p.reading and not finished and fraction_read is not None:
        assert p.read_bytes is not None and p.data_bytes is not None  # a fraction needs both
        sizes = fmt_sizes(min(p.read_bytes, p.data_bytes), p.data_bytes)
        headline = f"reading the data: {percent(fraction_read)} ({sizes})"
        counts = [f"{p.done:,} done of {p.enqueued:,} read"]
    elif p.reading:
        headline = f"{p.enqueued:,} records read" if finished else f"reading data: {p.enqueued:,} records so far"
        counts = [f"{p.done:,} done"]
    else:
        headline = percent(p.fraction or 0.0)
        counts = [f"{p.done:,} of {p.total:,} done"]
    counts.append(f"{p.failed:,} failed")
    if p.state == "cancelled" and p.total is not None and p.total > p.done + p.failed:
        counts.append(f"{p.total - p.done - p.failed:,} never ran (cancelled)")
    if p.preempted:
        counts.append(f"requeued after preemption: {p.preempted:,} (no attempt spent)")
    if not finished:
        counts += [
            f"{p.retrying:,} retrying",
            f"{p.queued:,} queued",
            f"{p.processing:,} in chunks being processed",
        ]
    timing = [f"{p.rate:,.0f} rec/s"]
    if finished:
        timing.append(f"took {fmt_duration(p.elapsed)}")
    else:
        eta = "ETA -- (paused: 'rqp resume' to go on)" if p.state == "paused" else f"ETA {fmt_duration(p.eta)}"
        timing += [f"elapsed {fmt_duration(p.elapsed)}", eta]
    return headline, counts, timing


def _vm_pieces(p: Progress) -> list[str]:
    """What an ended workload cost by VM (its sealed summary's, as the console shows it): the VMs
    that took the most processor-seconds first, at most ``MAX_VMS_SHOWN`` of them."""
    if not p.vms:
        return []
    ranked = sorted(p.vms, key=lambda v: (-(v["seconds"] + v["drained_seconds"]), v["host"]))
    pieces = ["processor-seconds by VM:"]
    for v in ranked[:MAX_VMS_SHOWN]:
        kind = {"spot": " (Spot)", "regular": " (regular)"}.get(v["priority"], "")
        lost = f" + {v['drained_seconds']:,.1f} s lost to evictions" if v["drained_seconds"] else ""
        pieces.append(f"{v['host']} {v['seconds']:,.1f} s{kind}{lost}")
    if len(ranked) > MAX_VMS_SHOWN:
        pieces.append(f"and {len(ranked) - MAX_VMS_SHOWN} more VMs ('rqp status --json' lists them all)")
    return pieces


def format_progress(p: Progress, width: int | None = None) -> str:
    """One line: workload, state, bar and percentage (or records read so far), counts, rate, ETA.
    With ``width``, the bar is shortened and the least telling pieces dropped until it fits."""
    headline, counts, timing = _progress_pieces(p)
    head = [p.workload, f"[{p.state}]"]
    bar = _bar(p.fraction or 0.0, BAR_WIDTH) if not p.reading else ""
    # what goes first when it does not fit: elapsed, the waiting counts, the rate, the failures,
    # the done count (the headline and the ETA stay)
    droppable = [*timing[1:-1], *counts[2:][::-1], timing[0], *counts[1:2], counts[0]]
    while True:
        shown = [*counts, *timing]
        line = "  ".join(x for x in [*head, bar, headline, *shown] if x)
        if width is None or len(line) <= width:
            return line
        if bar and len(bar) > 12:
            bar = _bar(p.fraction or 0.0, max(10, len(bar) - 2 - (len(line) - width)))
            continue
        if bar:
            bar = ""
            continue
        drop = next((x for x in droppable if x in counts or x in timing), None)
        if drop is None:
            return clip(line, width)
        droppable.remove(drop)
        counts = [x for x in counts if x != drop]
        timing = [x for x in timing if x != drop]


def format_status(p: Progress, width: int, notes: list[str] | None = None) -> list[str]:
    """``rqp status``: a few lines, none longer than ``width`` columns (so a terminal never wraps
    them and ``--watch`` can redraw them in place)::

        sales-2026  [running]  42.1%  [##############..................]
        1,234 of 3,000 done  12 failed  3 retrying  1,000 queued  256 in chunks being processed
        1,523 rec/s  elapsed 0:02  ETA 0:01
        hint: ...

    Once it ended, with its sealed summary opened here, a line says what it cost by VM
    (processor-seconds, Spot or regular, what drains lost), as the console does."""
    headline, counts, timing = _progress_pieces(p)
    first = f"{p.workload}  [{p.state}]  {headline}"
    room = width - len(first) - 2
    if not p.reading and room >= 12:
        first += "  " + _bar(p.fraction or 0.0, min(40, room) - 2)
    lines = [clip(first, width), *_flow(counts, width), *_flow(timing, width), *_flow(_vm_pieces(p), width)]
    if p.error:
        lines += textwrap.wrap(f"error: {p.error}", width, subsequent_indent="  ") or [""]
    for note in notes or []:
        lines += textwrap.wrap(note, width, subsequent_indent="  ")
    return lines


class Redraw:
    """Redraws a block of lines in place on a terminal: up to the block's first line, each line
    written over and cleared to its end, anything below the new block cleared."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.height = 0

    def show(self, lines: list[str]) -> None:
        up = f"\x1b[{self.height - 1}A" if self.height > 1 else ""
        self.out.write(up + "\r" + "\n".join(line + "\x1b[K" for line in lines) + "\x1b[J")
        self.out.flush()
        self.height = len(lines)

    def end(self) -> None:
        if self.height:
            self.out.write("\n")
            self.out.flush()


def terminal_width() -> int:
    """Columns for a block of text: the terminal's, less one (a line that reaches the last column
    makes some terminals wrap)."""
    return max(40, shutil.get_terminal_size((100, 24)).columns - 1)


def table(rows: list[list[str]], right: set[str], width: int | None) -> tuple[list[str], bool]:
    """``rows`` (the first is the header) as aligned columns, two spaces apart, numbers to the
    right. With ``width``, a table too wide loses its PROGRESS column (DONE says as much), then
    has its first column shortened in the middle (ids differ at their ends). Also: whether it was."""

    def render(rows: list[list[str]]) -> list[str]:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        header = rows[0]
        return [
            "  ".join(
                cell.rjust(w) if header[i] in right else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in rows
        ]

    lines = render(rows)
    if width is None or max(map(len, lines)) <= width:
        return lines, False
    if "PROGRESS" in rows[0]:
        at = rows[0].index("PROGRESS")
        rows = [row[:at] + row[at + 1 :] for row in rows]
        lines = render(rows)
        if max(map(len, lines)) <= width:
            return lines, False
    first = max(len(row[0]) for row in rows)
    room = max(12, width - (max(map(len, lines)) - first))  # what the other columns leave
    short = [[_middle(row[0], room), *row[1:]] for row in rows]
    return render(short), any(len(row[0]) > room for row in rows)


def _middle(text: str, width: int) -> str:
    """``text`` shortened to ``width`` by an ellipsis in its middle."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]
