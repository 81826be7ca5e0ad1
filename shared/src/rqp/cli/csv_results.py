"""``rqp results --format csv``: the writer; the layout (which columns, each row's cells) is
``rqp.csv_layout``'s, shared with ``rqp verify --results``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..csv_layout import COMPACT, FIXED_COLUMNS, CsvLayout, cell, csv_docs, is_flat

__all__ = ["COMPACT", "FIXED_COLUMNS", "CsvLayout", "cell", "csv_docs", "is_flat", "write_csv_results"]


class _Writer(Protocol):
    def writerow(self, row: Iterable[Any], /) -> Any: ...


def write_csv_results(writer: _Writer, lines: Callable[[], Iterable[bytes]], *, keyed: bool) -> None:
    """Write the results as CSV: a first pass over ``lines()`` finds the columns (``CsvLayout``),
    a second writes the rows -- two decrypting passes, never the whole results in memory."""
    layout = CsvLayout(csv_docs(lines()), keyed=keyed)
    writer.writerow(layout.header())
    for doc in csv_docs(lines()):
        writer.writerow(layout.row(doc))
