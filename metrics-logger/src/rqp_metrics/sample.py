"""One measurement, the unit every source produces and the store keeps as one JSON line.

Both sources use the same metric names (``cpu_percent``, ``net_in_bytes``...), so a report can
chart an Azure VM and a host-reported VM alike; the source's own name for the metric is not kept
because nothing downstream needs it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "COLLECTOR_WARNING",
    "CPU_PERCENT",
    "DISK_READ_BYTES",
    "DISK_READ_OPS",
    "DISK_USED_PERCENT",
    "DISK_WRITE_BYTES",
    "DISK_WRITE_OPS",
    "MEM_PERCENT",
    "MEM_USED_BYTES",
    "NET_IN_BYTES",
    "NET_OUT_BYTES",
    "SOURCE_AZURE",
    "SOURCE_HOST",
    "Sample",
    "format_ts",
    "parse_ts",
]

# metric names shared by every source
CPU_PERCENT = "cpu_percent"
MEM_PERCENT = "mem_percent"
MEM_USED_BYTES = "mem_used_bytes"
DISK_USED_PERCENT = "disk_used_percent"
#: bytes moved during ``period`` seconds (a delta, not a rate: totals add up exactly)
DISK_READ_BYTES = "disk_read_bytes"
DISK_WRITE_BYTES = "disk_write_bytes"
#: operations per second, averaged over ``period``
DISK_READ_OPS = "disk_read_ops_per_sec"
DISK_WRITE_OPS = "disk_write_ops_per_sec"
NET_IN_BYTES = "net_in_bytes"
NET_OUT_BYTES = "net_out_bytes"
#: a VM or metric the collector could not read; ``note`` says why (value is always 1)
COLLECTOR_WARNING = "collector_warning"

SOURCE_AZURE = "azure"
SOURCE_HOST = "host"


def parse_ts(value: str | float | int | datetime) -> datetime:
    """ISO-8601 (``Z`` or offset), epoch seconds, or a datetime → an aware UTC datetime.
    Naive datetimes are taken as UTC: every timestamp rqp writes is UTC."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        dt = datetime.fromtimestamp(float(value), tz=UTC)
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def format_ts(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Sample:
    ts: datetime
    vm: str
    source: str
    metric: str
    value: float
    unit: str
    #: seconds the value covers (deltas and averages); None for point-in-time gauges
    period: float | None = None
    #: free text for warnings ("VM not found (404); skipped")
    note: str | None = None

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            object.__setattr__(self, "ts", self.ts.replace(tzinfo=UTC))
        if not isinstance(self.value, (int, float)) or isinstance(self.value, bool) or not math.isfinite(self.value):
            raise ValueError(f"sample {self.vm}/{self.metric} has a non-finite value {self.value!r}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "ts": format_ts(self.ts),
            "vm": self.vm,
            "source": self.source,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
        }
        if self.period is not None:
            d["period"] = self.period
        if self.note is not None:
            d["note"] = self.note
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        return cls(
            ts=parse_ts(d["ts"]),
            vm=str(d["vm"]),
            source=str(d["source"]),
            metric=str(d["metric"]),
            value=float(d["value"]),
            unit=str(d["unit"]),
            period=None if d.get("period") is None else float(d["period"]),
            note=d.get("note"),
        )

    @property
    def key(self) -> tuple[str, str, str, datetime]:
        """Identity for de-duplication: the same VM, source, metric and time is the same sample
        (Azure re-reads overlap after a restart)."""
        return (self.vm, self.source, self.metric, self.ts)
