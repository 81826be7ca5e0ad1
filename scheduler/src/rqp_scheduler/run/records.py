"""The workload's records as one stream, positioned at the committed cursor.

JSON Lines and CSV are parsed here; a ``--format script`` workload's ``parse()`` runs in a script
host of its own, fed the decrypted data. After a restart, or after a Redis error left it unknown
whether the last chunk was enqueued, the stream is opened again at the cursor Redis holds.

It counts the plain bytes of the data it has read (``read_bytes``): while the total number of
records is unknown, that count against the data's size is what progress shows
(``rqp.throughput``).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from itertools import islice
from typing import cast

from rqp import sandbox
from rqp.records import Limits, LineMap, parse_records

from .context import RunContext

__all__ = ["Batch", "RecordStream"]

#: one chunk's records: (payload, why it cannot be queued, or None)
Batch = list[tuple[bytes, str | None]]


class RecordStream:
    """Reads ``ctx``'s records from ``ctx.head.enqueued`` on; ``exhausted`` once the last was read."""

    def __init__(self, ctx: RunContext, hosts: sandbox.HostFactory) -> None:
        self.ctx = ctx
        self.hosts = hosts
        #: the script's source (set by the run once the script has been checked)
        self.source: bytes | None = None
        self.records: Iterator[tuple[bytes, str | None]] | None = None
        self.exhausted = False
        self._parser: Generator[tuple[bytes, str | None], None, None] | None = None
        self._needs_reopen = False
        #: plain bytes of the data read so far (from its start: a reopened stream reads it again)
        self.read_bytes = 0

    def _counted(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """``chunks`` as they are, adding each one's size to ``read_bytes`` as it is taken."""
        for chunk in chunks:
            self.read_bytes += len(chunk)
            yield chunk

    def open(self) -> None:
        """(Re)position the stream at the committed cursor (and take that head as this
        scheduler's)."""
        ctx = self.ctx
        ctx.head = ctx.read_head()
        if ctx.round is None:
            ctx.round = ctx.head.round  # the round this run runs: later reads must agree (read_head)
        self.exhausted = ctx.head.total is not None
        self.records = None
        self.close()
        self.read_bytes = 0
        if not self.exhausted:
            m = ctx.workload.manifest
            recs: Iterator[tuple[bytes, str | None]]
            if m.format == "script":
                # the script's parse() runs in a script host of its own, fed the decrypted data
                assert self.source is not None
                # a generator function (annotated as an iterator): closing it ends its script host
                recs = self._parser = cast(
                    Generator[tuple[bytes, str | None], None, None],
                    sandbox.parse_records(self.hosts, ctx.id, self.source, self._counted(ctx.workload.data_chunks())),
                )
            else:
                ctx.lines = LineMap()  # read again from the start: every record's line again
                recs = parse_records(
                    m.format, self._counted(ctx.workload.data_chunks()), workload_id=ctx.id, delimiter=m.delimiter, lines=ctx.lines,
                    limits=Limits.from_settings(ctx.settings),
                )  # fmt: skip
            self.records = islice(recs, ctx.head.enqueued, None)

    def count_rest(self) -> int:
        """How many records the data holds past what was read: a workload cancelled while its
        data was still being read counts them as never run (reading on, enqueueing nothing)."""
        if self.exhausted:
            return 0
        if self.records is None:
            self.open()
        if self.records is None:
            return 0
        return sum(1 for _ in self.records)

    def close(self) -> None:
        """End the script host of a ``--format script`` parse, if one runs."""
        if self._parser is not None:
            self._parser.close()
            self._parser = None

    def reset(self) -> None:
        """After a Redis error: drop the stream; the next ``reopen_if_needed`` opens it again."""
        self.records = None
        self.close()
        self._needs_reopen = True

    def reopen_if_needed(self) -> None:
        if self._needs_reopen:
            self.open()
            self._needs_reopen = False

    def batches(self, budget: int, chunk_size: int, batch_records: int) -> list[Batch]:
        """Up to ``budget`` chunks of ``chunk_size`` (no more than ``batch_records`` records in
        all, at least one chunk); marks the stream exhausted at its end (a last, possibly
        empty, batch carries the total)."""
        assert self.records is not None
        chunks: list[Batch] = []
        for _ in range(min(budget, max(1, batch_records // chunk_size))):
            batch = list(islice(self.records, chunk_size))
            if len(batch) < chunk_size:
                self.exhausted = True
            if batch or self.exhausted:
                chunks.append(batch)
            if self.exhausted:
                break
        return chunks
