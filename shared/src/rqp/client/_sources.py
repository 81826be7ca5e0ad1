"""What ``Client.submit`` accepts as data, turned into the bytes ``rqp.workload.pack`` encrypts.

A path is read as it is (JSON Lines or CSV), or -- a Parquet file -- row by row as JSON Lines.
Records from code (an iterable of JSON-able values, a pandas DataFrame, a pyarrow Table) are
encoded as JSON Lines a batch at a time, so a generator of any length streams into the encrypted
upload without being held in memory, and no plaintext is ever written to disk.

What a column becomes in the script (DataFrame, Table, Parquet): each row is an object of its
columns; integers, floats, strings, booleans, lists and structs as JSON; a missing value (null,
pandas' NaN/NaT/None) is ``null``; dates, times and timestamps are ISO 8601 strings; decimals are
strings (exact); bytes are base64 strings; durations are seconds (a float). A float that is
Infinity is refused (strict JSON has none): write null or a string instead.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, WorkloadError
from ..jsonsafe import MAX_JSON_DEPTH
from ..records import repeated_name

__all__ = ["BATCH_ROWS", "PIECE_BYTES", "DataSource", "data_source", "encode_value", "is_dataframe", "is_table"]

#: rows of a DataFrame, Table or Parquet file converted at a time
BATCH_ROWS = 8192
#: encoded JSON Lines handed to the encryption in pieces of about this size
PIECE_BYTES = 1 << 20
#: the formats a data file may be given as (``format=``): the scheduler's, and Parquet (read here)
PATH_FORMATS = ("jsonl", "csv", "script", "parquet")
_SUFFIX_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class DataSource:
    """The data to pack: its bytes in pieces, the format the scheduler parses them with, and a
    stem for a generated workload id."""

    pieces: Path | Iterable[bytes]
    fmt: str
    stem: str


def encode_value(value: Any) -> Any:
    """``json.dumps``'s ``default``: what a DataFrame/Table/Parquet cell that is not JSON becomes."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    item = getattr(value, "item", None)  # a numpy scalar
    if callable(item):
        return item()
    tolist = getattr(value, "tolist", None)  # a numpy array
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


_encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=encode_value, ensure_ascii=False)


def _line(record: Any, number: int) -> str:
    try:
        return _encoder.encode(record)
    except (TypeError, ValueError) as exc:
        raise WorkloadError(
            f"record {number} cannot be sent as JSON ({exc}); give records of JSON values (NaN and Infinity "
            f"are not JSON: use null)"
        ) from None


def _pieces(records: Iterable[Any]) -> Iterator[bytes]:
    """JSON Lines of ``records``, about ``PIECE_BYTES`` at a time."""
    buf: list[str] = []
    size = 0
    for number, record in enumerate(records):
        text = _line(record, number)
        buf.append(text)
        size += len(text) + 1
        if size >= PIECE_BYTES:
            buf.append("")
            yield "\n".join(buf).encode()
            buf, size = [], 0
    if buf:
        buf.append("")
        yield "\n".join(buf).encode()


def _need(module: str, extra: str) -> Any:
    import importlib  # noqa: PLC0415 - the optional dependencies load only when used

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{module} is not installed; install it with pip install 'rqp[{extra}]'") from None


def is_dataframe(value: object) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "to_dict") and hasattr(value, "columns")


def is_table(value: object) -> bool:
    return type(value).__module__.startswith("pyarrow") and hasattr(value, "to_batches")


def _batch_rows(batches: Iterable[Any]) -> Iterator[Any]:
    for batch in batches:
        yield from batch.to_pylist()


def _parquet_rows(path: Path) -> Iterator[Any]:
    """The rows of a Parquet file, its columns checked now (before anything is packed)."""
    pq = _need("pyarrow.parquet", "dataframe")
    try:
        handle = pq.ParquetFile(path)
    except OSError as exc:
        raise WorkloadError(f"cannot read {path} as Parquet: {exc}") from None
    try:
        _unique_columns(handle.schema_arrow.names, f"Parquet file {path}")
        _unique_fields(handle.schema_arrow, f"Parquet file {path}")
    except WorkloadError:
        handle.close()
        raise
    return _file_rows(handle)


def _file_rows(handle: Any) -> Iterator[Any]:
    with handle:
        yield from _batch_rows(handle.iter_batches(batch_size=BATCH_ROWS))


def _unique_columns(names: list[str], what: str) -> None:
    """Refuse a table naming a column twice: its rows would keep only the last such column
    (JSON Lines refuses a name twice in a record the same way)."""
    twice = repeated_name(names)
    if twice is not None:
        raise WorkloadError(
            f"{what} names the column {twice!r} twice (only one could count); rename one and submit again"
        )


def _unique_fields(schema: Any, what: str) -> None:
    """Refuse a struct anywhere in a column -- in a list, a map's keys or values, a struct in a
    struct -- that names a field twice: its rows cannot be read as records (Arrow refuses to make
    a dictionary of it), and as JSON only one of the two could count. A column whose type nests
    deeper than ``MAX_JSON_DEPTH`` is refused too: none of its records could be read (rqp's JSON
    bound), and the walk is bounded by it."""
    for field in schema:
        found = _repeated_field(field.type, field.name)
        if found is None:
            continue
        at, twice = found
        if twice is None:
            raise WorkloadError(
                f"{what}'s column {field.name!r} nests deeper than {MAX_JSON_DEPTH} levels (at {_clipped(at)}), more "
                f"than a record may; flatten it and submit again"
            )
        where = "" if at == field.name else f", in its struct at {_clipped(at)}"
        raise WorkloadError(
            f"{what} names the field {twice!r} twice in the column {field.name!r}{where} (only one could count); "
            f"rename one and submit again"
        )


#: how much of a place in a nested column an error line shows (a deep one's path is long)
_PLACE_SHOWN = 80


def _clipped(at: str) -> str:
    return at if len(at) <= _PLACE_SHOWN else f"{at[: _PLACE_SHOWN // 2]}…{at[-_PLACE_SHOWN // 2 :]}"


#: the pyarrow.types tests of the list kinds (the list views are newer than some pyarrows)
_LIST_TYPES = ("is_list", "is_large_list", "is_fixed_size_list", "is_list_view", "is_large_list_view")


def _never(_kind: Any) -> bool:
    return False


def _children(pa: Any, kind: Any, at: str) -> tuple[list[tuple[Any, str]], str | None]:
    """The types inside Arrow type ``kind`` with where each sits, and the first field name a
    struct ``kind`` names twice (None when it names none, or is not a struct)."""
    types = pa.types
    if types.is_struct(kind):
        fields = [kind.field(i) for i in range(kind.num_fields)]
        return [(f.type, f"{at}.{f.name}") for f in fields], repeated_name([f.name for f in fields])
    if types.is_map(kind):
        return [(kind.key_type, f"{at}{{key}}"), (kind.item_type, f"{at}{{value}}")], None
    if any(getattr(types, test, _never)(kind) for test in _LIST_TYPES):
        return [(kind.value_type, f"{at}[]")], None
    if types.is_dictionary(kind):
        return [(kind.value_type, at)], None
    if types.is_union(kind):
        return [(kind.field(i).type, f"{at}<{kind.field(i).name}>") for i in range(kind.num_fields)], None
    return [], None


def _repeated_field(kind: Any, at: str, limit: int = MAX_JSON_DEPTH) -> tuple[str, str | None] | None:
    """(where, name) of the first struct inside the Arrow type ``kind`` naming a field twice, in
    the order a reader meets them; (where, None) when ``kind`` nests deeper than ``limit`` there;
    None when neither. ``at`` is where ``kind`` sits (``col``, ``col[]`` for a list's items,
    ``col{key}`` and ``col{value}`` for a map's, ``col.field`` for a struct's field). Walked
    with a stack, not recursion: a table built in memory can nest as deep as its maker likes."""
    pa = _need("pyarrow", "dataframe")
    todo: list[tuple[Any, str, int]] = [(kind, at, 0)]
    while todo:
        current, where, depth = todo.pop()
        if depth > limit:
            return where, None
        children, twice = _children(pa, current, where)
        if twice is not None:
            return where, twice
        todo.extend((child, place, depth + 1) for child, place in reversed(children))
    return None


def _frame_rows(frame: Any) -> Iterator[Any]:
    pa = _need("pyarrow", "dataframe")
    for start in range(0, len(frame), BATCH_ROWS):
        part = frame.iloc[start : start + BATCH_ROWS]
        yield from pa.Table.from_pandas(part, preserve_index=False).to_pylist()


def data_source(data: Any, fmt: str | None) -> DataSource:
    """``data`` as ``Client.submit`` takes it (see the module's docstring); ``fmt`` for a path
    (default: from its suffix, else JSON Lines)."""
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        chosen = fmt or _SUFFIX_FORMATS.get(path.suffix.lower(), "jsonl")
        if chosen not in PATH_FORMATS:
            raise WorkloadError(f"unknown data format {chosen!r}; use one of {', '.join(PATH_FORMATS)}")
        if not path.is_file():
            raise WorkloadError(f"cannot read {path}: no such file")
        if chosen == "parquet":
            return DataSource(_pieces(_parquet_rows(path)), "jsonl", path.stem)
        return DataSource(path, chosen, path.stem)
    if fmt not in (None, "jsonl"):
        raise WorkloadError(f"format={fmt!r} is for a data file; records from code are sent as JSON Lines")
    if is_dataframe(data):
        _unique_columns([str(c) for c in data.columns], "the DataFrame")
        return DataSource(_pieces(_frame_rows(data)), "jsonl", "dataframe")
    if is_table(data):
        _unique_columns(list(data.schema.names), "the Arrow table")
        _unique_fields(data.schema, "the Arrow table")
        return DataSource(_pieces(_batch_rows(data.to_batches(max_chunksize=BATCH_ROWS))), "jsonl", "table")
    if isinstance(data, bytes | bytearray | Mapping) or not isinstance(data, Iterable):
        raise WorkloadError(
            f"cannot submit data of type {type(data).__name__}: give a path, an iterable of records, a pandas "
            f"DataFrame or a pyarrow Table"
        )
    return DataSource(_pieces(data), "jsonl", "records")
