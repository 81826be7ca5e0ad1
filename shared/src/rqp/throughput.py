"""The one throughput figure of a workload's run, and how far the reading of its data got.

**Throughput** (records/s) is defined here once, and ``rqp status`` (``--watch`` included), the
console, the scheduler's log, the ``done`` event and the sealed summary all show this figure:

    records the processors processed in this run (every attempt counts)
    ÷ seconds from the start of the run's first processed chunk to the run's last commit

Time before a processor came, after the last one left, and between one run and the next
(``rqp retry`` starts a new run: the scheduler clears the perf hash then) does not dilute it. The
inputs are the plain perf hash (``rqp:w:W:perf``, written by ``commit.lua``): a Redis writer can
move this figure (the trust table's row says so), never a count or an exit code, and junk reads as
missing, which makes the figure 0.

**Reading progress**: while the scheduler is still reading the data, the total number of records
is unknown, but the data's size is (the signed manifest's); the scheduler publishes the bytes it
has read so far, and the fraction read is what progress shows then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .ledger import Perf

__all__ = [
    "PERF_FIRST",
    "estimated_total",
    "plain_number",
    "read_fraction",
    "records_per_second",
    "run_rate",
]

#: the perf field commit.lua sets once per run, at the first commit: when that chunk's records began
PERF_FIRST = "first"


def plain_number(value: str | bytes | None) -> float | None:
    """A number as Redis holds it in a plain field; junk (not a number, not finite, not UTF-8)
    reads as missing."""
    if value is None or value in {"", b""}:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def records_per_second(processed: float | None, first_at: float | None, last_at: float | None) -> float:
    """The throughput (see the module's docstring) from its three inputs; 0 when any is missing,
    or the window is empty or backwards."""
    if not processed or processed <= 0 or first_at is None or last_at is None:
        return 0.0
    busy = last_at - first_at
    rate = processed / busy if busy > 0 else 0.0
    return rate if math.isfinite(rate) else 0.0


def run_rate(perf: Mapping[str, str]) -> float:
    """The throughput of the run from the perf hash as ``Ledger.snapshot`` returns it."""
    return records_per_second(
        plain_number(perf.get(Perf.RECORDS)), plain_number(perf.get(PERF_FIRST)), plain_number(perf.get(Perf.LAST))
    )


def read_fraction(read_bytes: float | None, data_bytes: float | None) -> float | None:
    """How much of the data the scheduler has read, in [0, 1]; None when either size is unknown
    (or junk: a negative or zero size)."""
    if read_bytes is None or data_bytes is None or data_bytes <= 0 or read_bytes < 0:
        return None
    return min(1.0, read_bytes / data_bytes)


def estimated_total(enqueued: int, fraction: float | None) -> int | None:
    """The records the whole data probably holds, from the records read so far and the fraction
    of the bytes they took (records of one data set are about the same size)."""
    if fraction is None or fraction <= 0 or enqueued <= 0:
        return None
    return max(enqueued, round(enqueued / fraction))
