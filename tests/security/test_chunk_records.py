"""A data chunk's records as one sealed value (``rqp.chunk_records``, format 2): it opens only as
exactly what was sealed, for that workload, that chunk and those record ids; every edit a Redis
writer can make -- a swap with another chunk's value, a cut, a byte more, the id runs shifted or
re-sized -- is one refusal naming the chunk, never a record run under another's id."""

from __future__ import annotations

import os

import pytest

from rqp.chunk_records import HEADER, is_sealed_chunk, open_records, seal_records
from rqp.errors import IntegrityError
from rqp.ledger import PAIR
from rqp.workload import Seals

KEY = os.urandom(32)
RECORDS = [b'{"n": 0}', b"", b'{"n": 2, "pad": "' + b"x" * 3000 + b'"}', b"[]"]
#: where the first id run starts: HEADER, the nonce, the run count
RUN_AT = len(HEADER) + 12 + 4


def seals(chunk: str = "c00000003", workload: str = "w1", key: bytes = KEY) -> Seals:
    return Seals(key, workload, chunk)


def test_the_records_open_with_the_ids_they_were_sealed_for():
    s = seals()
    assert open_records(s, seal_records(s, range(40, 44), RECORDS)) == ([40, 41, 42, 43], RECORDS)
    # malformed records left gaps: the ids are kept exactly, as runs
    assert open_records(s, seal_records(s, [3, 4, 9, 11], RECORDS)) == ([3, 4, 9, 11], RECORDS)
    value = seal_records(s, range(1), [b"x"])
    assert is_sealed_chunk(value) and len(value) == len(HEADER) + 12 + 4 + 8 + 4 + 1 + 16


def test_one_nonce_per_value():
    s = seals()
    a, b = seal_records(s, range(4), RECORDS), seal_records(s, range(4), RECORDS)
    assert a[len(HEADER) : len(HEADER) + 12] != b[len(HEADER) : len(HEADER) + 12]


def _refused(s: Seals, value: bytes) -> str:
    with pytest.raises(IntegrityError) as err:
        open_records(s, value)
    msg = str(err.value)
    assert "\n" not in msg and "chunk c00000003 of workload w1" in msg, msg
    return msg


def test_a_value_moved_to_another_chunk_or_workload_does_not_open():
    value = seal_records(seals(), range(4), RECORDS)
    # under the same key too, so the AAD (not only the per-chunk key) refuses it
    assert "failed authentication" in _refused_elsewhere(seals("c00000004"), value)
    assert "failed authentication" in _refused_elsewhere(seals(workload="w2"), value)


def _refused_elsewhere(s: Seals, value: bytes) -> str:
    with pytest.raises(IntegrityError) as err:
        open_records(s, value)
    return str(err.value)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda v: v[:-1], id="cut-a-byte"),
        pytest.param(lambda v: v[:-200], id="cut-into-the-records"),
        pytest.param(lambda v: v + b"\0", id="grown"),
        pytest.param(lambda v: v[:RUN_AT] + (41).to_bytes(4, "big") + v[RUN_AT + 4 :], id="ids-shifted"),
        pytest.param(lambda v: v[: RUN_AT + 4] + (3).to_bytes(4, "big") + v[RUN_AT + 8 :], id="count-resized"),
        pytest.param(lambda v: v[: RUN_AT - 4] + (2).to_bytes(4, "big") + v[RUN_AT - 4 :], id="runs-resized"),
        pytest.param(lambda v: v[:40] + bytes([v[40] ^ 1]) + v[41:], id="bit-flipped"),
        pytest.param(lambda v: v[:10], id="truncated-header"),
        pytest.param(lambda v: b"", id="emptied"),
    ],
)
def test_every_edit_is_one_refusal(edit):
    s = seals()
    _refused(s, edit(seal_records(s, range(40, 44), RECORDS)))


def test_the_id_runs_are_bound_by_the_aad():
    """Fails without the AAD binding: the runs are in the clear, so a value whose first id was
    moved by one (40 -> 41) would open with every record under its neighbour's id if the AEAD
    did not cover them."""
    s = seals()
    value = seal_records(s, range(40, 44), RECORDS)
    shifted = value[:RUN_AT] + (41).to_bytes(4, "big") + value[RUN_AT + 4 :]
    assert "failed authentication" in _refused(s, shifted)
    assert open_records(s, value)[0] == [40, 41, 42, 43]


def test_two_chunks_values_swapped_do_not_open():
    a, b = seals("c00000003"), seals("c00000004")
    va, vb = seal_records(a, range(0, 4), RECORDS), seal_records(b, range(4, 8), RECORDS)
    _refused(a, vb)
    with pytest.raises(IntegrityError):
        open_records(b, va)


def test_the_per_record_form_is_told_apart():
    """Format 1 (a workload queued before the upgrade) starts with its first record id."""
    s = seals()
    old = s.seal_packed("record", [(0, b"a"), (1, b"b")])
    assert not is_sealed_chunk(old)
    assert not is_sealed_chunk(PAIR.pack(0xFF000000, 3) + b"abc")
    assert is_sealed_chunk(seal_records(s, range(2), [b"a", b"b"]))
