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
        row = {k: v for k, v in r.items() if k != "result"}
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


def failures_to_pandas(failures: list[Failure]) -> Any:
    pd = _need("pandas", "dataframe")
    return pd.DataFrame(
        [{"id": f.id, "key": f.key, "attempts": f.attempts, "error": f.error} for f in failures],
        columns=["id", "key", "attempts", "error"],
    )


def failures_table(failures: list[Failure], path: Path) -> Path:
    """Failures as a Parquet file: ``id``, ``key``, ``attempts``, ``error``."""
    pa = _need("pyarrow", "dataframe")
    pq = _need("pyarrow.parquet", "dataframe")
    schema = pa.schema([("id", pa.int64()), ("key", pa.string()), ("attempts", pa.int64()), ("error", pa.string())])
    rows = [{"id": f.id, "key": f.key, "attempts": f.attempts, "error": f.error} for f in failures]
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


def to_parquet(records: Callable[[], Iterable[dict[str, Any]]], path: Path) -> Path:
    """Two passes over ``records()`` (the results are decrypted twice, never held whole): one to
    tell whether the results spread into columns, one to write them in batches of ``BATCH_ROWS``;
    the first batch's schema is the file's."""
    pa = _need("pyarrow", "dataframe")
    pq = _need("pyarrow.parquet", "dataframe")
    spread = spreads(records())
    writer = None
    try:
        for batch in _batches(records()):
            rows = flatten(batch, spread, json_text=True)
            if writer is None:
                table = pa.Table.from_pylist(rows)
                writer = pq.ParquetWriter(path, table.schema)
            else:
                table = pa.Table.from_pylist(rows, schema=writer.schema)
            writer.write_table(table)
        if writer is None:
            pq.write_table(pa.table({"id": pa.array([], pa.int64())}), path)
    finally:
        if writer is not None:
            writer.close()
    return path
