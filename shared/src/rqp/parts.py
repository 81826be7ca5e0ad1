"""Result parts: the encrypted results of one chunk, one blob per job.

A part is ``b"RQPP1"`` then entries ``rid(u64) length(u32) sealed_result``; each result is sealed
on its own with AAD ``result|W|rid`` under the committing job's key (``Workload.scope``), so a part
(or an entry) moved to another workload, record or job fails to open. A workload packed with
``--id-field`` seals the record's own id (JSON), a tab, then the result. The chunk's commit names the one part that counts; parts of jobs that lost their
lease are orphans and are deleted at consolidation.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .errors import IntegrityError
from .workload import Seals, Workload

__all__ = ["decode_part", "encode_part", "part_blob", "seal_part"]

MAGIC = b"RQPP1"
_ENTRY = struct.Struct(">QI")


def part_blob(workload_id: str, jid_suffix: str) -> str:
    return f"workloads/{workload_id}/parts/{jid_suffix}.part"


def encode_part(entries: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(MAGIC)
    for rid, sealed in entries:
        out += _ENTRY.pack(rid, len(sealed))
        out += sealed
    return bytes(out)


def seal_part(workload: Workload | Seals, results: list[tuple[int, bytes]]) -> bytes:
    """Seal plaintext results and encode them as a part in one pass (``Workload.seal_packed``
    with the part's entry header): the same bytes as ``encode_part`` of each result sealed."""
    return MAGIC + workload.seal_packed("result", results, header=_ENTRY)


def decode_part(raw: bytes, name: str) -> Iterator[tuple[int, bytes]]:
    if not raw.startswith(MAGIC):
        raise IntegrityError(f"result part {name} is not an rqp result part (bad header): replaced or corrupted")
    pos = len(MAGIC)
    end = len(raw)
    while pos < end:
        if pos + _ENTRY.size > end:
            raise IntegrityError(f"result part {name} is truncated")
        rid, n = _ENTRY.unpack_from(raw, pos)
        pos += _ENTRY.size
        if pos + n > end:
            raise IntegrityError(f"result part {name} is truncated")
        yield rid, raw[pos : pos + n]
        pos += n
