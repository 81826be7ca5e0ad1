"""Results and failures as pandas DataFrames and Parquet files (``rqp[dataframe]``).

One rule for both: ``id`` (and ``key`` when the workload has an id field) first; when every
result is a flat object (no nested object or list, no field named ``id``, ``key`` or ``error``)
its fields become columns, else one ``result`` column (in Parquet, its JSON text, since a column
needs one type); an ``error`` column holds why a result was not JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..csv_layout import plain_text
from ..summary import Failure
from ._sources import BATCH_ROWS, _need

__all__ = ["failures_table", "failures_to_pandas", "flatten", "spreads", "to_pandas", "to_parquet"]

_RESERVED = frozenset({"id", "key", "error"})


def _flat(result: Any) -> bool:
    return (
        isinstance(result, dict)
        and not _RESERVED.intersection(result)
        and all(not isinstance(v, dict | list) for v in result.values())
    )


def spreads(records: Iterable[dict[str, Any]]) -> bool:
    """Whether the results' fields become columns (every result a flat object, at least one)."""
    seen = False
    for r in records:
        if "result" in r:
            if not _flat(r["result"]):
                return False
            seen = True
    return seen


def flatten(rows: list[dict[str, Any]], spread: bool, *, json_text: bool = False) -> list[dict[str, Any]]:
    """``rows`` (``Workload.results()`` records) with the columns the module's rule gives."""
    out = []
    for r in rows:
        # a key (or a reason) may hold a lone surrogate no writer can encode: its escape instead
        row = {k: plain_text(v) if isinstance(v, str) else v for k, v in r.items() if k != "result"}
        if "result" in r:
            if spread:
                row.update(r["result"])
            else:
                row["result"] = json.dumps(r["result"]) if json_text else r["result"]
        out.append(row)
    return out


def to_pandas(records: Iterable[dict[str, Any]]) -> Any:
    pd = _need("pandas", "dataframe")
    rows = list(records)
    return pd.DataFrame(flatten(rows, spreads(rows)))


def _failure_row(f: Failure) -> dict[str, Any]:
    """A failure as a row: its key and reason as text every writer can encode (``plain_text``)."""
    key = None if f.key is None else plain_text(f.key)
    return {"id": f.id, "key": key, "attempts": f.attempts, "error": None if f.error is None else plain_text(f.error)}


def failures_to_pandas(failures: list[Failure]) -> Any:
    pd = _need("pandas", "dataframe")
    return pd.DataFrame(
        [_failure_row(f) for f in failures],
        columns=["id", "key", "attempts", "error"],
    )


def failures_table(failures: list[Failure], path: Path) -> Path:
    """Failures as a Parquet file: ``id``, ``key``, ``attempts``, ``error``."""
    pa = _need("pyarrow", "dataframe")
    pq = _need("pyarrow.parquet", "dataframe")
    schema = pa.schema([("id", pa.int64()), ("key", pa.string()), ("attempts", pa.int64()), ("error", pa.string())])
    rows = [_failure_row(f) for f in failures]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _batches(records: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for r in records:
        batch.append(r)
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _batch_schema(rows: list[dict[str, Any]], pa: Any) -> Any:
    """The schema of every column any row has, in order of first appearance, each column's type
    inferred from all its values (``Table.from_pylist`` alone takes the first row's keys)."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    return pa.schema([(n, pa.array([r.get(n) for r in rows]).type) for n in names])


def _scan(records: Iterable[dict[str, Any]], pa: Any) -> tuple[bool, Any]:
    """One pass over the results: whether they spread into columns (``spreads``) and the schema
    that holds every row -- each batch's inferred schema unified with the others' (a column that
    first appears in a later batch, ``error`` included, is kept; an integer column that later
    holds a fraction becomes a double). Results whose columns do not unify (a field a number
    here, a string there) go into one ``result`` column of JSON text instead of spreading."""
    spread, seen = True, False
    spread_schemas: list[Any] = []
    whole_schemas: list[Any] = []
    for batch in _batches(records):
        whole_schemas.append(_batch_schema(flatten(batch, False, json_text=True), pa))
        if spread:
            results = [r["result"] for r in batch if "result" in r]
            seen = seen or bool(results)
            spread = all(_flat(x) for x in results)
            if spread:
                try:
                    spread_schemas.append(_batch_schema(flatten(batch, True), pa))
                except (pa.ArrowTypeError, pa.ArrowInvalid):
                    spread = False  # a field of two types in one batch: one JSON column
    if spread and seen:
        try:
            return True, pa.unify_schemas(spread_schemas, promote_options="permissive")
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            pass  # a field of two types: one JSON column below
    return False, pa.unify_schemas(whole_schemas, promote_options="permissive") if whole_schemas else None


def to_parquet(records: Callable[[], Iterable[dict[str, Any]]], path: Path) -> Path:
    """Two passes over ``records()`` (the results are decrypted twice, never held whole): one to
    tell whether the results spread into columns and the schema that holds every row
    (``_scan``), one to write them in batches of ``BATCH_ROWS``. (The first batch's schema is
    not enough: an ``error`` column or a field only later rows have would be dropped, and
    ``rqp verify`` would call those records changed.)"""
    pa = _need("pyarrow", "dataframe")
    pq = _need("pyarrow.parquet", "dataframe")
    spread, schema = _scan(records(), pa)
    if schema is None:
        pq.write_table(pa.table({"id": pa.array([], pa.int64())}), path)
        return path
    with pq.ParquetWriter(path, schema) as writer:
        for batch in _batches(records()):
            writer.write_table(pa.Table.from_pylist(flatten(batch, spread, json_text=True), schema=schema))
    return path
