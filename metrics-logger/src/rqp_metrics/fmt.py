"""Numbers as people read them; one place so the table, the page and the charts agree."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["RATE_FLOOR", "axis_labeler", "axis_value", "human_bytes", "human_rate", "pct", "utc"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float) -> str:
    n = float(n)
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_rate(n: float) -> str:
    return human_bytes(n) + "/s"


def pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def utc(dt: datetime | None) -> str:
    return "-" if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def axis_value(v: float, unit: str) -> str:
    if unit == "%":
        return f"{v:g}%"
    if unit == "B/s":
        return human_rate(v)
    return f"{v:g}"


#: a byte-rate axis reaches at least this (1 KiB/s): an idle network reads 0 ... 1 KiB/s, never
#: 0 B/s, 0 B/s, 1 B/s (the console's VMs page draws the same floor)
RATE_FLOOR = 1024.0


def axis_labeler(top: float, step: float, unit: str) -> Callable[[float], str]:
    """Tick labels for an axis from 0 to ``top`` in ``step``s: one unit for the whole axis (the
    binary unit of ``top`` for bytes) and exactly the decimals the step needs, so no two ticks
    read the same ("0.25 KiB/s, 0.50 KiB/s", never "0 B/s, 0 B/s, 1 B/s")."""
    if unit != "B/s":
        return lambda v: axis_value(v, unit)
    scale, i = 1.0, 0
    while top / scale >= 1024 and i < len(_UNITS) - 1:
        scale *= 1024
        i += 1
    scaled = f"{step / scale:.6f}".rstrip("0").rstrip(".")
    decimals = min(3, len(scaled.split(".")[1]) if "." in scaled else 0)
    name = _UNITS[i]
    return lambda v: f"{v / scale:.{decimals}f} {name}/s"
