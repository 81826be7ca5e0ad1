"""Reading an exported results file (or records handed to the Python client) for checking against
the signed root: an export verifies only if it is exactly what ``rqp results`` writes for that
workload and round, read as a consumer's tool would read it.

Each row of the export is matched with the stored result of the same record (itself checked
against the summary's digest and, by ``rqp.verification.check_rows``, against the signed leaf)
and must be that result's rendering in the export's format, cell for cell or field for field:

* JSON Lines: each line byte for byte the line ``rqp results`` prints for that record (so a
  number written otherwise -- ``0.10000000000000001`` for ``0.1``, ``-0`` for ``0`` -- differs,
  as it would to a Decimal or jsonb reader), and strict JSON (``rqp.jsonsafe``: UTF-8, no NaN,
  bounded nesting, no name twice in an object);
* client records (Python values, not text): a JSON object with exactly the fields rqp writes
  (``id``, ``key`` when the workload has keys, ``result`` or ``error``), equal value for value
  (``1``, ``1.0`` and ``true`` told apart);
* CSV: the header exactly the columns ``rqp results --format csv`` writes for the workload
  (``rqp.csv_layout.CsvLayout``), each row the writer's cells for that record -- so the
  spread cells and the ``result`` cell are both checked, and no cell's type is guessed;
* Parquet: exactly the writer's columns and types (``rqp.client._frames``), each row the
  writer's row for that record cell for cell, floats bit for bit at any depth (so ``-0.0`` for
  rqp's ``0.0`` differs, as ``-0`` for ``0`` does in JSON Lines).

Anything else -- a forged cell, an extra field or column, a duplicate name, a ragged row -- makes
that record "differ" (or the whole file refused when its shape is not rqp's), with one line
naming the line or column. A row for a record rqp has no result for differs as well.
"""

from __future__ import annotations

import csv
import json
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .csv_layout import CsvLayout, csv_docs
from .errors import IntegrityError, WorkloadError
from .jsonsafe import JSONRejected, loads, result_line
from .results import read_results
from .results_root import row_leaf
from .verification import Row
from .workload import Workload

__all__ = ["PARQUET_OWN_METADATA", "RENDER_BATCH", "client_rows", "export_rows"]

#: the only key-value metadata of rqp's Parquet exports: the Arrow schema pyarrow's writer stores
PARQUET_OWN_METADATA = frozenset({b"ARROW:schema"})
#: stored results rendered per batch (Parquet renders through pyarrow a batch at a time)
RENDER_BATCH = 1024
#: a CSV cell may be as large as a result (the csv module's own limit is 128 KiB)
CSV_FIELD_LIMIT = 2**31 - 1
_RECORD_ID = re.compile(r"0|[1-9][0-9]{0,18}")
_ASCII_OPTS: dict[str, Any] = {"sort_keys": True, "separators": (",", ":"), "allow_nan": False}


@dataclass(frozen=True)
class _Entry:
    """One row of an export as read: its record id, where it is, and what to compare."""

    id: int
    where: str
    value: Any


def _ascii(value: Any, where: str) -> str:
    """``value`` as sorted, ASCII JSON: equal only for equal JSON (``1``, ``1.0``, ``true`` differ)."""
    try:
        return json.dumps(value, **_ASCII_OPTS)
    except (TypeError, ValueError, RecursionError) as exc:
        reason = " ".join(str(exc).split())[:80] if not isinstance(exc, RecursionError) else "nested too deeply"
        raise IntegrityError(f"{where} is not JSON rqp could have written ({reason})") from None


def _stored_docs(store: Any, workload: Workload) -> Iterator[dict[str, Any]]:
    """The stored results as ``rqp results`` prints them (``rqp.jsonsafe.result_line``), parsed."""
    for line in read_results(store, workload):
        if line.strip():
            doc = loads(result_line(line))
            if isinstance(doc, dict) and isinstance(doc.get("id"), int) and not isinstance(doc["id"], bool):
                yield doc


class _StoredDoc(dict[str, Any]):
    """A stored result as ``rqp results`` prints it, parsed, with the exact line it prints."""

    __slots__ = ("line",)
    line: bytes


def _stored_lines(store: Any, workload: Workload) -> Iterator[dict[str, Any]]:
    """``_stored_docs``, each keeping its printed line: a JSON Lines export is compared byte for
    byte with it, so ``0.10000000000000001`` or ``-0`` (equal doubles, other numbers to a
    Decimal or jsonb reader) is not taken for rqp's ``0.1`` or ``0``."""
    for line in read_results(store, workload):
        if line.strip():
            printed = result_line(line)
            doc = loads(printed)
            if isinstance(doc, dict) and isinstance(doc.get("id"), int) and not isinstance(doc["id"], bool):
                out = _StoredDoc(doc)
                out.line = printed
                yield out


def _in_order(entries: Callable[[], Iterable[_Entry]]) -> Iterable[_Entry]:
    last = -1
    for e in entries():
        if e.id < last:
            return sorted(entries(), key=lambda x: x.id)
        last = e.id
    return entries()


def _matched(
    stored: Iterator[dict[str, Any]],
    render: Callable[[list[dict[str, Any]]], list[Any]],
    entries: Iterable[_Entry],
) -> Iterator[Row]:
    """Rows to check: each entry that is exactly its stored record's rendering stands for that
    record's leaf; any other differs, naming where it is."""
    pending: list[tuple[dict[str, Any], Any]] = []

    def refill() -> None:
        batch = [d for _, d in zip(range(RENDER_BATCH), stored, strict=False)]
        pending.extend(zip(batch, render(batch), strict=True))
        pending.reverse()  # popped from the end

    refill()
    for e in entries:
        while pending and pending[-1][0]["id"] < e.id:
            pending.pop()
            if not pending:
                refill()
        if pending and pending[-1][0]["id"] == e.id and pending[-1][1] == e.value:
            doc = pending[-1][0]
            key = doc.get("key")
            yield Row(e.id, None if key is None else str(key), [row_leaf(doc)])
        else:
            yield Row(
                e.id,
                None,
                [],
                problem=f"record {e.id} differs from what was signed ({e.where} is not what 'rqp results' writes "
                f"for it: a value, field or cell changed, added or removed)",
            )


def _jsonl_entries(path: Path) -> Iterator[_Entry]:
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            where = f"line {n} of {path}"
            try:
                doc = loads(raw)
            except JSONRejected as exc:
                raise IntegrityError(f"{where} is not strict JSON ({exc}): not an export of 'rqp results'") from None
            # the line as written, not as parsed: rqp writes one form of each result
            yield _Entry(_doc_entry(doc, where).id, where, raw[:-1] if raw.endswith(b"\n") else raw)


def _doc_entry(doc: Any, where: str) -> _Entry:
    if not isinstance(doc, Mapping):
        raise IntegrityError(f"{where} is not a JSON object: not a results record as rqp writes it")
    rid = doc.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0:
        raise IntegrityError(f"{where} has no record id (a whole number 'id'): not a results record as rqp writes it")
    return _Entry(rid, where, _ascii(dict(doc), where))


def _render_json(docs: list[dict[str, Any]]) -> list[Any]:
    return [_ascii(d, f"stored record {d['id']}") for d in docs]


def _printed(docs: list[dict[str, Any]]) -> list[Any]:
    return [d.line if isinstance(d, _StoredDoc) else None for d in docs]


def _csv_entries(path: Path, header: list[str]) -> Iterator[_Entry]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        try:
            got = next(reader, None)
            if got != header:
                shown = ",".join(header)
                raise IntegrityError(
                    f"the header of {path} is not the columns 'rqp results --format csv' writes for this workload "
                    f"({shown[:200]}{'...' if len(shown) > 200 else ''}): columns added, removed, repeated or reordered"
                )
            for cells in reader:
                where = f"line {reader.line_num} of {path}"
                if len(cells) != len(header):
                    raise IntegrityError(f"{where} has {len(cells)} cells, its header {len(header)}: altered")
                if not _RECORD_ID.fullmatch(cells[0]):
                    raise IntegrityError(f"{where} has no record id (its 'id' cell is {cells[0][:20]!r})")
                yield _Entry(int(cells[0]), where, cells)
        except UnicodeDecodeError:
            raise IntegrityError(
                f"line {reader.line_num + 1} of {path} is not UTF-8: not an export of 'rqp results'"
            ) from None
        except csv.Error as exc:
            raise IntegrityError(f"line {reader.line_num} of {path} is not CSV as rqp writes it ({exc})") from None


def _no_metadata(path: Path, pf: Any, got: Any) -> None:
    """Refuse metadata ``rqp results --format parquet`` does not write: it writes none but the
    Arrow schema pyarrow stores (``PARQUET_OWN_METADATA``), while pandas labels columns (and
    index, dtypes) by a file's ``pandas`` metadata -- a file that relabels ``price`` as ``big``
    must not verify because its cells are rqp's."""
    found = [k for k in (pf.metadata.metadata or {}) if k not in PARQUET_OWN_METADATA]
    found += [k for k in (got.metadata or {}) if k not in found]
    if found:
        shown = ", ".join(repr(k.decode("utf-8", "backslashreplace"))[:40] for k in found[:5])
        raise IntegrityError(
            f"{path} carries metadata 'rqp results --format parquet' never writes ({shown}): it may relabel "
            f"columns for pandas; export it again with 'rqp results --format parquet'"
        )
    for field in got:
        if field.metadata:
            raise IntegrityError(
                f"column {field.name!r} of {path} carries metadata 'rqp results --format parquet' never writes; "
                f"export it again with 'rqp results --format parquet'"
            )


def _exact(value: Any) -> Any:
    """A Parquet row (or cell) as a value equal only for identical cells: a float by its IEEE 754
    bits (``==`` takes ``-0.0`` for rqp's ``0.0`` and can never match a NaN, whatever its
    payload), every value with its type (``1``, ``1.0`` and ``True`` apart), at any depth (structs,
    lists, maps)."""
    if isinstance(value, float):
        return ("float", struct.pack(">d", value))
    if isinstance(value, dict):
        return ("struct", tuple((k, _exact(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_exact(v) for v in value))
    return (type(value).__name__, value)


def _parquet(store: Any, workload: Workload, path: Path) -> Iterator[Row]:
    from .client._frames import _need, _scan, flatten  # noqa: PLC0415 - pyarrow only for Parquet
    from .client._stream import parse_line  # noqa: PLC0415

    pa = _need("pyarrow", "dataframe")
    pq = _need("pyarrow.parquet", "dataframe")

    def docs() -> Iterator[dict[str, Any]]:
        return (parse_line(line) for line in read_results(store, workload) if line.strip())

    spread, schema = _scan(docs(), pa)
    if schema is None:
        schema = pa.schema([("id", pa.int64())])
    try:
        pf = pq.ParquetFile(path)
        got = pf.schema_arrow
    except Exception as exc:  # noqa: BLE001 - pyarrow raises its own kinds for junk
        raise IntegrityError(f"{path} is not a readable Parquet file ({str(exc)[:100]})") from None
    if got.names != schema.names or [f.type for f in got] != [f.type for f in schema]:
        raise IntegrityError(
            f"the columns of {path} are not the ones 'rqp results --format parquet' writes for this workload "
            f"({', '.join(f'{f.name}: {f.type}' for f in schema)[:200]}): columns added, removed, repeated or retyped"
        )
    _no_metadata(path, pf, got)

    def render(batch: list[dict[str, Any]]) -> list[Any]:
        return [
            _exact(row)
            for row in pa.Table.from_pylist(flatten(batch, spread, json_text=True), schema=schema).to_pylist()
        ]

    def entries() -> Iterator[_Entry]:
        n = 0
        try:
            for batch in pf.iter_batches():
                for rec in batch.to_pylist():
                    n += 1
                    rid = rec.get("id")
                    if not isinstance(rid, int) or rid < 0:
                        raise IntegrityError(f"row {n} of {path} has no record id")
                    yield _Entry(rid, f"row {n} of {path}", _exact(rec))
        except IntegrityError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise IntegrityError(f"row {n + 1} of {path} cannot be read ({str(exc)[:100]})") from None

    stored = (d for d in docs() if isinstance(d.get("id"), int))
    yield from _matched(stored, render, _in_order(entries))


def export_rows(store: Any, workload: Workload, path: Path, fmt: str | None) -> Iterator[Row]:
    """The rows of the export ``path`` to check (``fmt``: jsonl, csv, parquet; default by its name)."""
    fmt = fmt or {".csv": "csv", ".parquet": "parquet"}.get(path.suffix.lower(), "jsonl")
    if not path.exists():
        raise WorkloadError(f"results file {path} does not exist; export it with 'rqp results W -o {path}'")
    if fmt == "parquet":
        yield from _parquet(store, workload, path)
    elif fmt == "csv":
        layout = CsvLayout(csv_docs(read_results(store, workload)), keyed=workload.manifest.id_field is not None)
        header = layout.header()
        stored = _stored_docs(store, workload)
        yield from _matched(stored, lambda b: [layout.row(d) for d in b], _in_order(lambda: _csv_entries(path, header)))
    else:
        printed = _stored_lines(store, workload)
        yield from _matched(printed, _printed, _in_order(lambda: _jsonl_entries(path)))


def client_rows(store: Any, workload: Workload, given: list[Any]) -> Iterator[Row]:
    """Rows of records handed to ``Workload.verify(results=...)``: each must be exactly a record
    as ``results()`` gives it (a dict of ``id``, ``key`` when keyed, ``result`` or ``error``)."""
    entries = [_doc_entry(doc, f"results item {i}") for i, doc in enumerate(given)]
    entries.sort(key=lambda e: e.id)
    yield from _matched(_stored_docs(store, workload), _render_json, entries)
