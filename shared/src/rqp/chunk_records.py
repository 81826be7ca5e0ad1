"""A data chunk's records as ONE sealed value: the form of ``rqp:w:<W>:c:<chunk>`` since format 2.

The scheduler's enqueue once sealed each record on its own (``Seals.seal_packed``: one AES-GCM
call, one nonce and a header per record) and the processor opened each one -- ~0.6 µs of call
overhead per record on each side, whatever the record's size. A chunk's records are now sealed
together, under the chunk's own key (``Workload.scope(chunk)``), as::

    HEADER(4) || nonce(12) || runs || AES-GCM(lengths(4 x n, u32 little-endian) || payloads, AAD)
    runs = u32 k || k x (u32 first id, u32 count)        (big-endian; one run unless ids skip)

with ``AAD = rqp/records|W|<chunk>|`` followed by ``runs``: the value names exactly which records
it holds, in order, and the AEAD binds that list to the workload, the chunk and the ciphertext.
A value moved from another chunk or workload, cut, grown, re-sized, or with its id runs edited
fails authentication as a whole -- one one-line refusal, never a shifted, dropped, duplicated or
swapped record; the lengths are inside the ciphertext, so no record boundary can move either.
The reader takes the records its sealed spec names from the ids the value proves (a spec re-run
for fewer records than were sealed takes those; one the value does not hold is missing, as in
the per-record form).

The older per-record form (format 1: ``PAIR(id, length) || nonce || ciphertext`` per record,
AAD ``rqp/record|W|<id>``) is still read where it can be met -- a workload queued before an
upgrade -- and records kept for a retry stay sealed one by one under the data key. A format-1
value starts with its first record's id (u32 big-endian), so it starts with ``HEADER`` only when
that id is 0xFF524302 (over 4.28 billion records); a value read in the wrong form fails
authentication, it never opens.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from collections.abc import Sequence
from itertools import accumulate, chain
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag

from .crypto import NONCE_SIZE, TAG_SIZE, aad
from .errors import IntegrityError

if TYPE_CHECKING:
    from .workload import Seals

__all__ = ["HEADER", "is_sealed_chunk", "open_records", "seal_records"]

#: the first bytes of a format-2 chunk value (format 1 starts with a record id, see above)
HEADER = b"\xffRC\x02"
#: the record lengths are stored little-endian; this host's ``array`` needs swapping when not
_SWAP_LENGTHS = sys.byteorder != "little"
_U32 = struct.Struct(">I")
_RUN = struct.Struct(">II")
_START = len(HEADER) + NONCE_SIZE


def is_sealed_chunk(value: bytes) -> bool:
    """Whether ``value`` is in the one-value form (format 2), not the per-record one."""
    return value.startswith(HEADER)


def _runs(ids: Sequence[int]) -> bytes:
    """``ids`` as the value's runs: (first, count) for each stretch of consecutive ids."""
    if isinstance(ids, range) and ids.step == 1 and ids:  # the enqueue's usual chunk
        return _U32.pack(1) + _RUN.pack(ids.start, len(ids))
    runs: list[list[int]] = []
    for rid in ids:
        if runs and runs[-1][0] + runs[-1][1] == rid:
            runs[-1][1] += 1
        else:
            runs.append([rid, 1])
    return _U32.pack(len(runs)) + b"".join(_RUN.pack(first, count) for first, count in runs)


def seal_records(seals: Seals, ids: Sequence[int], payloads: Sequence[bytes]) -> bytes:
    """The records ``payloads`` (of ids ``ids``, same order) as one value under ``seals``'s key:
    one nonce, one AES-GCM call and one join for the chunk -- no Python step per record."""
    if len(ids) != len(payloads):
        raise ValueError(f"{len(ids)} ids for {len(payloads)} records")
    lengths = array("I", map(len, payloads))
    if _SWAP_LENGTHS:
        lengths.byteswap()
    nonce = os.urandom(NONCE_SIZE)
    runs = _runs(ids)
    plaintext = b"".join(chain((lengths,), payloads))
    return HEADER + nonce + runs + seals.sealer.aead.encrypt(nonce, plaintext, _aad(seals) + runs)


def _aad(seals: Seals) -> bytes:
    return aad("records", seals.id, seals.scope, "")


def open_records(seals: Seals, value: bytes) -> tuple[list[int], list[bytes]]:
    """The ids a format-2 chunk value holds and their payloads, in order; ``IntegrityError`` (one
    line naming the chunk and the fix) unless the value is exactly what ``seal_records`` sealed
    for those ids of this chunk (``seals.scope``) of this workload."""
    what = f"the sealed records of chunk {seals.scope} of workload {seals.id}"
    fix = "re-run the chunk or re-schedule the workload"
    cut = IntegrityError(f"{what} are truncated or not rqp's (written behind rqp's back); {fix}")
    if not value.startswith(HEADER) or len(value) < _START + _U32.size:
        raise cut
    (k,) = _U32.unpack_from(value, _START)
    body = _START + _U32.size + k * _RUN.size
    if body + TAG_SIZE > len(value):
        raise cut
    runs = value[_START:body]
    try:
        plaintext = seals.sealer.aead.decrypt(value[len(HEADER) : _START], value[body:], _aad(seals) + runs)
    except InvalidTag:
        raise IntegrityError(
            f"{what} failed authentication: tampered with, cut, moved from another chunk or workload, or its "
            f"record ids edited; {fix}"
        ) from None
    ids: list[int] = []
    for at in range(_START + _U32.size, body, _RUN.size):
        first, count = _RUN.unpack_from(value, at)
        ids.extend(range(first, first + count))
    n = len(ids)
    head = 4 * n
    lengths = array("I")
    lengths.frombytes(plaintext[:head])
    if _SWAP_LENGTHS:
        lengths.byteswap()
    # authenticated, so only a sealer's bug reaches this; still never a wrong record run
    if len(lengths) != n or sum(lengths) != len(plaintext) - head:
        raise IntegrityError(f"{what} do not add up to their {n} records (a sealer's bug); {fix}")
    bounds = list(accumulate(lengths, initial=head))
    return ids, list(map(plaintext.__getitem__, map(slice, bounds, bounds[1:])))
