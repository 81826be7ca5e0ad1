"""Numbers as people read them; one place so the table, the page and the charts agree."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["axis_value", "human_bytes", "human_rate", "pct", "utc"]

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
