"""Parse decrypted workload data into records, streaming: the data never has to fit in memory.

A parser yields ``(payload, error)`` pairs: ``payload`` is the record as JSON text (bytes), or
``error`` says why this one record is malformed, naming its line (it becomes a failed record;
the rest go on). No input raises out of a parser: invalid UTF-8, a line or CSV field over its
limit (``Limits``), an unterminated quote, a broken header -- each fails its own records.
JSON Lines payloads are passed through unparsed and validated by the processor with
``rqp.jsonsafe`` (nesting, NaN, huge numbers), so the scheduler's enqueue rate is not bounded by
JSON parsing; a leading UTF-8 BOM is dropped and blank lines are not records.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

from .config import DEFAULT_MAX_CSV_FIELD_BYTES, DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_RECORD_BYTES
from .errors import WorkloadError
from .jsonsafe import JSONRejected, loads

__all__ = [
    "FORMATS",
    "JSONL_PROBE",
    "IterStream",
    "Limits",
    "LineMap",
    "csv_header_repeats",
    "line_of",
    "parse_records",
    "record_key",
    "repeated_name",
]

FORMATS = ("jsonl", "csv", "script")
#: how many of a JSON Lines workload's first records are parsed to tell whether it is JSON at all
JSONL_PROBE = 20

log = logging.getLogger("rqp.records")

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Limits:
    """What one record may be: a record over a limit fails alone, naming its line and the setting."""

    #: a JSON Lines line or a CSV row (``RQP_MAX_RECORD_BYTES``); also bounds the reader's memory
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    #: arrays/objects nested deeper fail the record (``RQP_MAX_JSON_DEPTH``)
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    #: one CSV field, in characters (``RQP_MAX_CSV_FIELD_BYTES``; ``csv.field_size_limit``)
    max_csv_field_bytes: int = DEFAULT_MAX_CSV_FIELD_BYTES

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(settings.max_record_bytes, settings.max_json_depth, settings.max_csv_field_bytes)


class IterStream(io.RawIOBase):
    """A read-only binary file over an iterator of byte strings."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def line_of(points: Iterable[tuple[int, int]], rid: int) -> int:
    """Record ``rid``'s line given ``LineMap`` change points (sorted by record id)."""
    shift = 0
    for first, line in points:
        if first > rid:
            break
        shift = line - first - 1
    return rid + 1 + shift


class LineMap:
    """Which line of a JSON Lines file each record came from, so a malformed record's failure
    names its line. Record ``rid`` is on line ``rid + 1`` until a blank line shifts the rest:
    only those shifts are kept, as (record id, its line) change points -- none for data
    without blank lines, whatever its size."""

    __slots__ = ("_shift", "points")

    def __init__(self) -> None:
        self.points: list[tuple[int, int]] = []
        self._shift = 0

    def saw(self, rid: int, line: int) -> None:
        """Record ``rid`` is on ``line`` (1-based); kept only when a blank line moved it."""
        if line - rid - 1 != self._shift:
            self._shift = line - rid - 1
            self.points.append((rid, line))

    def line_of(self, rid: int) -> int:
        return line_of(self.points, rid)

    def within(self, first: int, last: int) -> tuple[tuple[int, int], ...]:
        """The change points a chunk of records ``first..last`` needs to name any record's line
        on its own: the shift in force at ``first`` (when there is one) and those after it."""
        line = self.line_of(first)
        head = ((first, line),) if line != first + 1 else ()
        return head + tuple(p for p in self.points if first < p[0] <= last)


class _FormatProbe:
    """Looks at the first ``JSONL_PROBE`` records of a JSON Lines workload (and no more: the rest
    pass through unparsed): when none of them is JSON, the data is most likely in another format,
    and the log says so once instead of leaving it to a failure per record."""

    def __init__(self, workload_id: str) -> None:
        self.workload_id = workload_id
        self.seen = 0
        self.malformed = 0
        self.done = False

    def look(self, line: bytes) -> None:
        self.seen += 1
        try:
            loads(line)  # strict and recursion-free: a poisoned record is just not JSON
        except ValueError:
            self.malformed += 1
        if self.seen >= JSONL_PROBE:
            self.end()

    def end(self) -> None:
        if self.done:
            return
        self.done = True
        if self.seen and self.malformed == self.seen:
            log.warning(
                "workload %s: %s: if its data is not JSON Lines, re-pack it with --format csv (or --format script and a "
                "parse() in the script)",
                self.workload_id or "?",
                f"none of its first {self.seen} records is valid JSON"
                if self.seen >= JSONL_PROBE
                else f"none of its {self.seen} records is valid JSON",
            )


def _without_bom(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` without a leading UTF-8 byte order mark (however the stream is cut)."""
    head = b""
    it = iter(chunks)
    for chunk in it:
        head += chunk
        if len(head) >= len(_BOM) or not _BOM.startswith(head):
            break
    yield head.removeprefix(_BOM)
    yield from it


def _jsonl(
    chunks: Iterable[bytes], workload_id: str = "", lines: LineMap | None = None, limits: Limits = Limits()
) -> Iterator[tuple[bytes, str | None]]:
    rest = b""
    probe = _FormatProbe(workload_id)
    rid = 0
    lineno = 0  # lines before this chunk's
    shift = 0  # blank lines so far: record rid is on line rid + 1 + shift
    saw = lines.saw if lines is not None else None
    cap = limits.max_record_bytes
    skipping = False  # inside a line over the limit: its bytes are dropped up to its newline
    too_long = f"longer than {cap:,} bytes (RQP_MAX_RECORD_BYTES)"
    for chunk in _without_bom(chunks):
        data = rest + chunk
        if skipping:
            nl = data.find(b"\n")
            if nl < 0:
                rest = b""
                continue
            skipping = False
            lineno += 1
            if saw is not None and lineno != rid + 1 + shift:
                shift = lineno - rid - 1
                saw(rid, lineno)
            rid += 1
            yield b"", f"malformed record at line {lineno}: {too_long}"
            data = data[nl + 1 :]
        parts = data.split(b"\n")
        rest = parts.pop()
        if parts and probe.done and b"\r" not in data and max(map(len, parts)) <= cap and all(map(bytes.strip, parts)):
            # the usual piece: every line a record within the limit, no blank line, no CR --
            # the checks below hold for all of them at once (run in C), so pass them through
            if saw is not None and lineno + 1 != rid + 1 + shift:
                shift = lineno - rid
                saw(rid, lineno + 1)
            rid += len(parts)
            lineno += len(parts)
            yield from zip(parts, repeat(None))
            if len(rest) > cap:
                skipping, rest = True, b""
            continue
        for n, line in enumerate(parts, lineno + 1):
            if line.strip():
                record = line.rstrip(b"\r")
                if saw is not None and n != rid + 1 + shift:
                    shift = n - rid - 1
                    saw(rid, n)
                rid += 1
                if len(record) > cap:
                    yield b"", f"malformed record at line {n}: {too_long}"
                    continue
                if not probe.done:
                    probe.look(record)
                yield record, None
        lineno += len(parts)
        if len(rest) > cap:
            skipping, rest = True, b""
    if skipping or rest.strip():
        record = rest.rstrip(b"\r")
        if saw is not None and lineno + 1 != rid + 1 + shift:
            saw(rid, lineno + 1)
        if skipping:
            yield b"", f"malformed record at line {lineno + 1}: {too_long}"
        else:
            if not probe.done:
                probe.look(record)
            yield record, None
    probe.end()


class _LineTooLong(Exception):
    """A CSV line over ``RQP_MAX_RECORD_BYTES`` (already skipped): its row fails alone."""


class _CsvLines:
    """``csv.reader``'s input: the text's lines, counted, none longer than ``cap`` characters
    held in memory -- a longer one is read past and raises ``_LineTooLong`` instead."""

    def __init__(self, text: io.TextIOBase, cap: int) -> None:
        self.text = text
        self.cap = cap
        self.lineno = 0

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        line = self.text.readline(self.cap + 1)
        if not line:
            raise StopIteration
        self.lineno += 1
        if len(line) > self.cap and not line.endswith(("\n", "\r")):
            while line and not line.endswith(("\n", "\r")):
                line = self.text.readline(self.cap)
            raise _LineTooLong(f"a line longer than {self.cap:,} characters (RQP_MAX_RECORD_BYTES)")
        return line


def repeated_name(names: Iterable[str]) -> str | None:
    """The first column name ``names`` holds twice, None when each is once: a table read into
    records would keep only the last such column (JSON Lines refuses a name twice the same way)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def csv_header_repeats(path: Path, delimiter: str) -> str | None:
    """The column a CSV file's header names twice (``repeated_name``), read as the scheduler reads
    it; None when none is, or the header cannot be read (the scheduler then names why)."""
    try:
        with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
            for row in csv.reader(_CsvLines(fh, Limits().max_record_bytes), delimiter=delimiter, strict=True):
                if row:
                    return repeated_name(row)
    except (OSError, csv.Error, _LineTooLong):
        return None
    return None


def _not_utf8(header: list[str], row: list[str]) -> str:
    """Which field of ``row`` holds bytes that are not UTF-8 (read as lone surrogates)."""
    for i, value in enumerate(row):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            name = f"{header[i]!r}" if i < len(header) else f"{i + 1}"
            return f"field {name} is not valid UTF-8 (character {exc.start + 1})"
    return "not valid UTF-8"


def _csv(chunks: Iterable[bytes], delimiter: str, limits: Limits = Limits()) -> Iterator[tuple[bytes, str | None]]:
    csv.field_size_limit(limits.max_csv_field_bytes)  # process-wide; a longer field fails its row below
    text = io.TextIOWrapper(
        io.BufferedReader(IterStream(chunks)), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )
    source = _CsvLines(text, limits.max_record_bytes)
    # strict: a stray quote or one left open at the end fails its row instead of being guessed at
    reader = csv.reader(source, delimiter=delimiter, strict=True)
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    header: list[str] | None = None
    broken = ""  # why the header cannot name the fields: every row fails with it
    while True:
        start = source.lineno + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, _LineTooLong) as exc:
            reason = str(exc)
            if reason == "unexpected end of data":
                reason = "a quoted field opened in this row is never closed"
            elif "field limit" in reason:
                reason = f"a field longer than {limits.max_csv_field_bytes:,} characters (RQP_MAX_CSV_FIELD_BYTES)"
            if header is None and not broken:
                broken = f"the header (line {start}) is malformed: {reason}; fix the data's first line"
            else:
                yield b"", f"malformed CSV row at line {start}: {broken or reason}"
            continue
        if not row:
            continue
        if header is None and not broken:
            try:
                "".join(row).encode("utf-8")
            except UnicodeEncodeError:
                broken = f"the header (line {start}) is malformed: {_not_utf8([], row)}; fix the data's first line"
                continue
            twice = repeated_name(row)
            if twice is not None:
                broken = f"the header (line {start}) names the column {twice!r} twice; rename one (as JSON Lines refuses a name twice)"
                continue
            header = row
            continue
        if broken or header is None:
            yield b"", f"malformed CSV row at line {start}: {broken}"
            continue
        if len(row) != len(header):
            yield b"", f"malformed CSV row at line {start}: {len(row)} fields, the header has {len(header)}"
            continue
        try:
            payload = dumps(dict(zip(header, row, strict=True))).encode("utf-8")
        except UnicodeEncodeError:
            yield b"", f"malformed CSV row at line {start}: {_not_utf8(header, row)}"
            continue
        if len(payload) > limits.max_record_bytes:
            yield (
                b"",
                f"malformed CSV row at line {start}: longer than {limits.max_record_bytes:,} bytes (RQP_MAX_RECORD_BYTES)",
            )
            continue
        yield payload, None


def parse_records(
    fmt: str,
    chunks: Iterable[bytes],
    *,
    workload_id: str = "",
    delimiter: str = ",",
    lines: LineMap | None = None,
    limits: Limits | None = None,
) -> Iterator[tuple[bytes, str | None]]:
    """rqp's own parsers; ``--format script`` (the user's ``parse()``) runs in a script host
    instead: ``rqp.sandbox.parse_records``. ``lines`` (JSON Lines) learns each record's line;
    ``limits`` (``Limits.from_settings``) bounds each record. Never raises for any data."""
    limits = limits or Limits()
    if fmt == "jsonl":
        return _jsonl(chunks, workload_id, lines, limits)
    if fmt == "csv":
        return _csv(chunks, delimiter, limits)
    raise WorkloadError(
        f"unknown data format {fmt!r} for rqp's parsers; use one of jsonl, csv (or script, through rqp.sandbox)"
    )


def record_key(
    payload: bytes, field: str, rid: int, lines: LineMap, max_depth: int = DEFAULT_MAX_JSON_DEPTH
) -> tuple[str | None, str | None]:
    """(the record's own id, None), or (None, why the record cannot be queued): ``--id-field``
    names a field every record must have (a string or a number). Strict and recursion-free
    (``rqp.jsonsafe``): no record, however nested or large, raises out of here."""
    try:
        doc = loads(payload, max_depth) if payload[:1] == b"{" else None
    except JSONRejected as exc:
        return None, f"malformed record at line {lines.line_of(rid)}: {exc}"
    value = doc.get(field) if isinstance(doc, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"record {rid} has no id in field {field!r} (a string or a number; rqp pack --id-field {field})"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            # a key is an identifier every export writes as text: one with no UTF-8 form fails its record
            bad = f"\\u{ord(value[exc.start]):04x}"
            return None, (
                f"malformed record at line {lines.line_of(rid)}: its id in field {field!r} is not Unicode text "
                f"(it holds a lone surrogate {bad}); fix the data's {field!r} value"
            )
    return str(value), None
