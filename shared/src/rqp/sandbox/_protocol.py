"""The pipe protocol between a role and its script host. Standard library only (the host imports
it too).

Every message is a frame: ``type (u8) | length (u32) | payload``. The role speaks first:

=============  ========================================  ======================================
role -> host   payload                                   host answers
=============  ========================================  ======================================
CONFIG         JSON: limits, paths                       READY (JSON report of the protections)
SCRIPT         u16 id length, workload id, source        LOADED (JSON) or ERROR (one line)
BATCH          u32 count, then (u32 length, record)*     RESULTS frames, then BATCH_END
PARSE          (empty); then DATA frames and DATA_END    RECORDS frames, then PARSE_END or ERROR
=============  ========================================  ======================================

Many values travel as *columns* (``pack_columns``): a count, a kind byte per value, a length per
value (native u32: both ends are the same machine and interpreter), then the values end to end --
a few bulk operations per batch instead of a struct call per record. A BATCH is the lengths and
values of its records; RESULTS are a u32 start index and the columns of the records from there,
in order; RECORDS (from ``parse()``) are columns. Before each record the host stores its index +
1 in a shared page (``IN_HAND``), so when it hangs or dies the role knows which record was in
hand without a write per record. Closing the host's input ends it.

Results are bounded (``RQP_MAX_RESULT_BYTES``): the host refuses to send a larger one (it sends
``TOO_LARGE`` with the reason instead) and packs RESULTS frames so that none exceeds
``results_frame_limit`` -- one value alone, or values adding up to at most ``FLUSH_BYTES``. The
role reads a frame's length before its body and never buffers one announced over that limit.

Everything the host sends is treated as untrusted by the role: it runs the workload's script.
"""

from __future__ import annotations

import struct
from array import array
from itertools import accumulate, pairwise

__all__ = [
    "BATCH",
    "BATCH_END",
    "CONFIG",
    "COUNT",
    "CRASHED",
    "DATA",
    "DATA_END",
    "ERROR",
    "FLUSH_BYTES",
    "HEADER",
    "IN_HAND",
    "LOADED",
    "MALFORMED",
    "NOT_JSON",
    "NO_SCRIPT",
    "OK",
    "PARSE",
    "PARSE_END",
    "PERMANENT",
    "RAISED",
    "READY",
    "RECORDS",
    "RESULTS",
    "RETRYABLE",
    "SCRIPT",
    "TIMED_OUT",
    "TOO_LARGE",
    "FrameBuffer",
    "FrameTooLarge",
    "frame",
    "pack_batch",
    "pack_columns",
    "results_frame_limit",
    "too_large",
    "unpack_batch",
    "unpack_columns",
]

HEADER = struct.Struct(">BI")
COUNT = struct.Struct(">I")
IN_HAND = struct.Struct("=I")  # native: the host writes it through memoryview.cast("I")
MAX_FRAME = 1 << 30
#: the host sends a frame of results once its values add up to this (or on age, or alone when
#: one value is larger)
FLUSH_BYTES = 256 << 10
#: the longest error message the host sends for one record (a script's exception text is its own)
MAX_ERROR_BYTES = 2000

# role -> host
CONFIG = 1
SCRIPT = 2
BATCH = 3
PARSE = 4
DATA = 5
DATA_END = 6
# host -> role
READY = 10
LOADED = 11
ERROR = 12
RESULTS = 13
BATCH_END = 14
RECORDS = 15
PARSE_END = 16

# the outcome of one record
OK = 0  #: the payload is the result, JSON
RAISED = 1  #: process() raised; the payload says what
MALFORMED = 2  #: the record is not valid JSON
NOT_JSON = 3  #: process() returned something JSON cannot represent
TIMED_OUT = 4  #: (set by the role) the record ran past RQP_RECORD_TIMEOUT
CRASHED = 5  #: (set by the role) the script process died with this record in hand
NO_SCRIPT = 6  #: (set by the role) the script could not be (re)loaded
PERMANENT = 7  #: process() raised rqp.PermanentError or a type named permanent: never retried
TOO_LARGE = (
    8  #: the result is over RQP_MAX_RESULT_BYTES (set by the host, or by the role for a frame announced too large)
)
#: outcomes worth another attempt: the script's own failures may be transient
RETRYABLE = frozenset({RAISED, CRASHED})


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def results_frame_limit(max_result_bytes: int) -> int:
    """The largest RESULTS frame an honest host sends: one value alone (a result of at most
    ``max_result_bytes``, or an error of at most ``MAX_ERROR_BYTES``), or non-empty values adding
    up to at most ``FLUSH_BYTES`` -- each with its kind byte and u32 length -- plus the start
    index and count."""
    one = max(max_result_bytes, MAX_ERROR_BYTES, FLUSH_BYTES)
    return one + 5 * FLUSH_BYTES + 2 * COUNT.size + 5


def too_large(size: int, limit: int) -> str:
    """The reason a record fails when its result is over the limit (the role names the record)."""
    return (
        f"result is {size} bytes, over RQP_MAX_RESULT_BYTES ({limit}); return less per record "
        f"(write bulky output elsewhere) or raise RQP_MAX_RESULT_BYTES"
    )


assert array("I").itemsize == 4


def pack_columns(kinds: bytes | None, values: list[bytes]) -> bytes:
    """Count, kinds (omitted when ``kinds`` is None), lengths, values."""
    head = COUNT.pack(len(values))
    lengths = array("I", map(len, values)).tobytes()
    return b"".join((head, kinds or b"", lengths, *values))


class Columns(tuple):
    """(kinds, values), and where the values begin in the payload (for checks on all of them)."""

    values_at: int
    empty_value: bool


def unpack_columns(payload: bytes, with_kinds: bool, start: int = 0) -> tuple[bytes, list[bytes]]:
    """(kinds, values) from ``payload[start:]``; ``ValueError`` when it does not add up. The
    result also says where the values begin (``values_at``) and whether one is empty."""
    (count,) = COUNT.unpack_from(payload, start)
    pos = start + COUNT.size
    kinds = b""
    if with_kinds:
        kinds = payload[pos : pos + count]
        pos += count
    lengths = array("I")
    lengths.frombytes(payload[pos : pos + 4 * count])
    pos += 4 * count
    if len(kinds) != (count if with_kinds else 0) or len(lengths) != count or pos + sum(lengths) != len(payload):
        raise ValueError("columns do not add up")
    ends = list(accumulate(lengths, initial=pos))
    out = Columns((kinds, [payload[a:b] for a, b in pairwise(ends)]))
    out.values_at = pos
    out.empty_value = 0 in lengths
    return out


def pack_batch(records: list[bytes]) -> bytes:
    return pack_columns(None, records)


def unpack_batch(payload: bytes) -> list[bytes]:
    return unpack_columns(payload, False)[1]


class FrameTooLarge(ValueError):
    """A frame's header announces more than the reader accepts; its body was never buffered."""

    def __init__(self, kind: int, size: int, limit: int) -> None:
        super().__init__(f"frame {kind} of {size} bytes, over the limit of {limit}")
        self.kind = kind
        self.size = size


class FrameBuffer:
    """Bytes in, complete frames out: for the role's non-blocking reads of the host's pipe.

    A frame's length is checked as soon as its header is in: the caller reads at most one
    read's worth past a header before ``frames`` refuses it, so the buffer never holds more
    than ``limit`` plus one read."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes held that are not a complete frame yet."""
        return len(self._buf)

    def frames(self, limit: int = MAX_FRAME) -> list[tuple[int, bytes]]:
        """The complete frames buffered; ``FrameTooLarge`` for one announced over ``limit``."""
        out: list[tuple[int, bytes]] = []
        buf = self._buf
        pos = 0
        end = len(buf)
        while end - pos >= HEADER.size:
            kind, n = HEADER.unpack_from(buf, pos)
            if n > limit:
                if out:  # the frames before it first; the next call refuses it
                    break
                raise FrameTooLarge(kind, n, limit)
            if end - pos - HEADER.size < n:
                break
            start = pos + HEADER.size
            out.append((kind, bytes(buf[start : start + n])))
            pos = start + n
        if pos:
            del buf[:pos]
        return out
