"""Parse decrypted workload data into records, streaming: the data never has to fit in memory.

A parser yields ``(payload, error)`` pairs: ``payload`` is the record as JSON text (bytes), or
``error`` says why this one record is malformed (it becomes a failed record; the rest go on).
JSON Lines payloads are passed through unparsed and validated by the processor, so the
scheduler's enqueue rate is not bounded by JSON parsing.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from .errors import WorkloadError

__all__ = ["FORMATS", "JSONL_PROBE", "IterStream", "LineMap", "line_of", "parse_records"]

FORMATS = ("jsonl", "csv", "script")
#: how many of a JSON Lines workload's first records are parsed to tell whether it is JSON at all
JSONL_PROBE = 20

log = logging.getLogger("rqp.records")


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
            json.loads(line)
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


def _jsonl(
    chunks: Iterable[bytes], workload_id: str = "", lines: LineMap | None = None
) -> Iterator[tuple[bytes, str | None]]:
    rest = b""
    probe = _FormatProbe(workload_id)
    rid = 0
    lineno = 0  # lines before this chunk's
    shift = 0  # blank lines so far: record rid is on line rid + 1 + shift
    saw = lines.saw if lines is not None else None
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        for n, line in enumerate(parts, lineno + 1):
            if line.strip():
                record = line.rstrip(b"\r")
                if not probe.done:
                    probe.look(record)
                if saw is not None and n != rid + 1 + shift:
                    shift = n - rid - 1
                    saw(rid, n)
                rid += 1
                yield record, None
        lineno += len(parts)
    if rest.strip():
        record = rest.rstrip(b"\r")
        if not probe.done:
            probe.look(record)
        if saw is not None and lineno + 1 != rid + 1 + shift:
            saw(rid, lineno + 1)
        yield record, None
    probe.end()


def _csv(chunks: Iterable[bytes], delimiter: str) -> Iterator[tuple[bytes, str | None]]:
    text = io.TextIOWrapper(io.BufferedReader(IterStream(chunks)), encoding="utf-8-sig", newline="")
    reader = csv.reader(text, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    width = len(header)
    for row in reader:
        if not row:
            continue
        if len(row) != width:
            yield b"", f"malformed CSV row at line {reader.line_num}: {len(row)} fields, the header has {width}"
            continue
        yield json.dumps(dict(zip(header, row, strict=True)), separators=(",", ":")).encode(), None


def parse_records(
    fmt: str,
    chunks: Iterable[bytes],
    *,
    workload_id: str = "",
    delimiter: str = ",",
    lines: LineMap | None = None,
) -> Iterator[tuple[bytes, str | None]]:
    """rqp's own parsers; ``--format script`` (the user's ``parse()``) runs in a script host
    instead: ``rqp.sandbox.parse_records``. ``lines`` (JSON Lines) learns each record's line."""
    if fmt == "jsonl":
        return _jsonl(chunks, workload_id, lines)
    if fmt == "csv":
        return _csv(chunks, delimiter)
    raise WorkloadError(
        f"unknown data format {fmt!r} for rqp's parsers; use one of jsonl, csv (or script, through rqp.sandbox)"
    )
