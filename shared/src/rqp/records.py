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

__all__ = ["FORMATS", "JSONL_PROBE", "IterStream", "parse_records"]

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


def _jsonl(chunks: Iterable[bytes], workload_id: str = "") -> Iterator[tuple[bytes, str | None]]:
    rest = b""
    probe = _FormatProbe(workload_id)
    for chunk in chunks:
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.strip():
                record = line.rstrip(b"\r")
                if not probe.done:
                    probe.look(record)
                yield record, None
    if rest.strip():
        record = rest.rstrip(b"\r")
        if not probe.done:
            probe.look(record)
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
    fmt: str, chunks: Iterable[bytes], *, workload_id: str = "", delimiter: str = ","
) -> Iterator[tuple[bytes, str | None]]:
    """rqp's own parsers; ``--format script`` (the user's ``parse()``) runs in a script host
    instead: ``rqp.sandbox.parse_records``."""
    if fmt == "jsonl":
        return _jsonl(chunks, workload_id)
    if fmt == "csv":
        return _csv(chunks, delimiter)
    raise WorkloadError(
        f"unknown data format {fmt!r} for rqp's parsers; use one of jsonl, csv (or script, through rqp.sandbox)"
    )
