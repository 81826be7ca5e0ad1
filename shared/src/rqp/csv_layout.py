"""The layout of ``rqp results --format csv``: results as a table a spreadsheet opens. A result that is a flat
object (each value a string, number, boolean or null) spreads over one column per key; anything
else -- a number, a string, a list, a nested object -- goes whole into a ``result`` cell (JSON, a
string as itself); a record whose result could not be read has its reason in ``error``.

Column names are one-to-one with result keys: a key named like a fixed column (``id``, ``key``,
``result``, ``error``) or starting ``result.`` is written ``result.<key>``, so a key ``id`` is
``result.id`` and a key ``result.id`` is ``result.result.id``: no two columns share a name, and
``rqp verify --results`` can tell exactly what each cell is."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .jsonsafe import result_line

__all__ = ["COMPACT", "FIXED_COLUMNS", "RESULT_PREFIX", "CsvLayout", "cell", "csv_docs", "is_flat", "plain_text"]

#: the JSON ``rqp results`` writes: no spaces, as the results lines themselves are
COMPACT = (",", ":")
#: the columns that are not a result's keys; a result key of one of these names (or starting
#: ``RESULT_PREFIX``) is shown as ``result.<name>`` so neither is lost
FIXED_COLUMNS = ("id", "key", "result", "error")
RESULT_PREFIX = "result."


def is_flat(value: Any) -> bool:
    """A non-empty object whose values are all scalars: one row of cells."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(v is None or isinstance(v, (str, int, float, bool)) for v in value.values())
    )


def plain_text(text: str) -> str:
    """``text`` as every export writes it: itself, except that a lone surrogate (which UTF-8 has no
    form for, so a CSV or Parquet writer would fail on it for the whole workload) is written as
    its escape ``\\udXXX`` -- deterministic, as ``rqp.results_root.text_bytes`` does for the root,
    so ``rqp verify --results`` renders the same cell."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def cell(value: Any) -> str:
    """A value as a CSV cell: a string as itself (``plain_text``), null as empty, anything else as
    compact JSON (``true``, ``12.5``, ``[1,2]``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return plain_text(value)
    return json.dumps(value, allow_nan=False, separators=COMPACT)


def _column(name: str) -> str:
    return RESULT_PREFIX + name if name in FIXED_COLUMNS or name.startswith(RESULT_PREFIX) else name


class CsvLayout:
    """The columns of a results CSV, found from all its rows: the flat results' keys in the order
    they first appear, and whether any result or error needs its own cell. The writer and
    ``rqp verify --results`` both render through it, so a row is checked cell for cell."""

    def __init__(self, docs: Iterable[dict[str, Any]], *, keyed: bool) -> None:
        fields: dict[str, None] = {}
        other = failed = False
        for doc in docs:
            if "result" not in doc:
                failed = True
            elif is_flat(doc["result"]):
                fields.update(dict.fromkeys(doc["result"]))
            else:
                other = True
        self.names = list(fields)
        self.keyed = keyed
        self.result_cell = other or not self.names
        self.error_cell = failed

    def header(self) -> list[str]:
        return [
            "id",
            *(["key"] if self.keyed else []),
            *map(_column, self.names),
            *(["result"] if self.result_cell else []),
            *(["error"] if self.error_cell else []),
        ]

    def row(self, doc: dict[str, Any]) -> list[str]:
        res: Any = doc.get("result")
        flat = "result" in doc and is_flat(res)
        row = [cell(doc.get("id")), *([cell(doc.get("key"))] if self.keyed else [])]
        row += [cell(res.get(name)) if flat else "" for name in self.names]
        if self.result_cell:
            row.append("" if flat or "result" not in doc else cell(res))
        if self.error_cell:
            row.append("" if "result" in doc else cell(doc.get("error")))
        return row


def csv_docs(lines: Iterable[bytes]) -> Iterable[dict[str, Any]]:
    """The results lines as the CSV shows them (``rqp results``'s JSON Lines, parsed)."""
    for line in lines:
        if line.strip():
            yield json.loads(result_line(line))  # strict: what a script host sent may not be JSON
