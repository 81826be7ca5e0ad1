"""``rqp results --format csv``: results as a table a spreadsheet opens. A result that is a flat
object (each value a string, number, boolean or null) spreads over one column per key; anything
else -- a number, a string, a list, a nested object -- goes whole into a ``result`` cell (JSON, a
string as itself); a record whose result could not be read has its reason in ``error``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..jsonsafe import result_line

__all__ = ["COMPACT", "FIXED_COLUMNS", "cell", "is_flat", "write_csv_results"]

#: the JSON ``rqp results`` writes: no spaces, as the results lines themselves are
COMPACT = (",", ":")
#: the columns that are not a result's keys; a result key of one of these names is shown as
#: ``result.<name>`` so neither is lost
FIXED_COLUMNS = ("id", "key", "result", "error")


class _Writer(Protocol):
    def writerow(self, row: Iterable[Any], /) -> Any: ...


def is_flat(value: Any) -> bool:
    """A non-empty object whose values are all scalars: one row of cells."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(v is None or isinstance(v, (str, int, float, bool)) for v in value.values())
    )


def cell(value: Any) -> str:
    """A value as a CSV cell: a string as itself, null as empty, anything else as compact JSON
    (``true``, ``12.5``, ``[1,2]``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, allow_nan=False, separators=COMPACT)


def _column(name: str) -> str:
    return f"result.{name}" if name in FIXED_COLUMNS else name


def write_csv_results(writer: _Writer, lines: Callable[[], Iterable[bytes]], *, keyed: bool) -> None:
    """Write the results as CSV: a first pass over ``lines()`` finds the columns (the keys of the
    flat results in the order they first appear, and whether any result or error needs its own
    cell), a second writes the rows -- two decrypting passes, never the whole results in memory."""
    fields: dict[str, None] = {}
    other = failed = False
    for doc in _docs(lines()):
        if "result" not in doc:
            failed = True
        elif is_flat(doc["result"]):
            fields.update(dict.fromkeys(doc["result"]))
        else:
            other = True
    names = list(fields)
    writer.writerow(
        [
            "id",
            *(["key"] if keyed else []),
            *map(_column, names),
            *(["result"] if other or not names else []),
            *(["error"] if failed else []),
        ]
    )
    for doc in _docs(lines()):
        res: Any = doc.get("result")
        flat = "result" in doc and is_flat(res)
        row = [cell(doc.get("id")), *([cell(doc.get("key"))] if keyed else [])]
        row += [cell(res.get(name)) if flat else "" for name in names]
        if other or not names:
            row.append("" if flat or "result" not in doc else cell(res))
        if failed:
            row.append("" if "result" in doc else cell(doc.get("error")))
        writer.writerow(row)


def _docs(lines: Iterable[bytes]) -> Iterable[dict[str, Any]]:
    for line in lines:
        if line.strip():
            yield json.loads(result_line(line))  # strict: what a script host sent may not be JSON
