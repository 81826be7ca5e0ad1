"""Result parts of the current form (``RQPP2``): results sealed a group at a time, each group one
AES-GCM value whose AAD binds the workload, the committing job and the exact record ids it
holds. A group opens only for those ids of that job of that workload; anything moved, cut, grown
or re-labelled fails as a whole with one line. The older per-result form still reads."""

from __future__ import annotations

import os
import struct

import pytest

from rqp.errors import IntegrityError
from rqp.parts import (
    MAGIC_GROUPS,
    PartWriter,
    ResultRefused,
    iter_results,
    open_groups,
    seal_group,
    seal_part,
)
from rqp.workload import Seals

KEY = bytes(range(32))
JOB = "rqp-w1-c00000000-0"
RESULTS = [(i, b'{"n":%d}' % (i * 10)) for i in range(4, 12)]


class _Store:
    """What ``PartWriter.upload`` writes to: the part's bytes (the real stores are tested apart)."""

    def __init__(self) -> None:
        self.parts: dict[str, bytes] = {}

    def put(self, name: str, data: bytes) -> None:
        self.parts[name] = data

    def put_stream(self, name: str, pieces: object) -> None:
        self.parts[name] = b"".join(pieces)  # type: ignore[call-overload]


def _part(seals: Seals, results: list[tuple[int, bytes]], group_bytes: int | None = None) -> bytes:
    store = _Store()
    with PartWriter(seals, group_bytes=group_bytes) as writer:
        for k in range(0, len(results), 3):
            writer.add(results[k : k + 3])
        writer.upload(store, "p")  # type: ignore[arg-type]
    return store.parts["p"]


def _group(raw: bytes) -> tuple[int, int]:
    """(start, end) of the first group's body in a part."""
    (n,) = struct.unpack_from(">I", raw, len(MAGIC_GROUPS))
    start = len(MAGIC_GROUPS) + 4
    return start, start + n


def test_a_usual_part_is_one_group_and_reads_back_whole_and_in_pieces():
    seals = Seals(KEY, "w1", JOB)
    raw = _part(seals, RESULTS)
    assert raw.startswith(MAGIC_GROUPS)
    assert _group(raw)[1] == len(raw)  # one group: one AES-GCM value for the part
    assert open_groups(raw, "p", seals) == ([rid for rid, _ in RESULTS], [r for _, r in RESULTS])
    for size in (1, 5, 7, 64):
        pieces = [raw[i : i + size] for i in range(0, len(raw), size)]
        assert list(iter_results(pieces, "p", seals)) == RESULTS
    assert list(iter_results([raw], "p", seals, wanted={5, 9})) == [RESULTS[1], RESULTS[5]]


def test_results_past_the_group_size_make_more_groups_in_order():
    seals = Seals(KEY, "w1", JOB)
    raw = _part(seals, RESULTS, group_bytes=20)
    assert _group(raw)[1] < len(raw)  # more than one group
    assert list(iter_results([raw], "p", seals)) == RESULTS
    assert list(zip(*open_groups(raw, "p", seals), strict=True)) == RESULTS


@pytest.mark.parametrize(
    ("other", "what"),
    [
        pytest.param(Seals(KEY, "w1", "rqp-w1-c00000000-1"), "another attempt of the chunk", id="attempt"),
        pytest.param(Seals(KEY, "w1", "rqp-w1-c00000001-0"), "another chunk's job", id="chunk"),
        pytest.param(Seals(KEY, "w2", JOB), "another workload", id="workload"),
    ],
)
def test_a_group_opens_only_for_its_own_workload_and_job(other, what):
    """The same key, another AAD: fails only because the AAD binds the workload and the job (the
    processors derive a key per job too; this test holds the AAD to it on its own)."""
    raw = _part(Seals(KEY, "w1", JOB), RESULTS)
    with pytest.raises(ResultRefused, match=r"the result of record 4 .*failed authentication"):
        open_groups(raw, "p", other)
    with pytest.raises(ResultRefused):
        list(iter_results([raw], "p", other))


@pytest.mark.parametrize("delta", [1, 3, 1 << 8])
def test_a_group_with_its_record_ids_edited_does_not_open(delta):
    """The runs (which records the group holds) are in the AAD: shifting them -- so that results
    would land under other records' ids -- fails the group, never a re-labelled result."""
    seals = Seals(KEY, "w1", JOB)
    raw = bytearray(_part(seals, RESULTS))
    start, _ = _group(bytes(raw))
    at = start + 12 + 4  # nonce, run count: the first run's first id (u64)
    (first,) = struct.unpack_from(">Q", raw, at)
    struct.pack_into(">Q", raw, at, first + delta)
    with pytest.raises(ResultRefused):
        open_groups(bytes(raw), "p", seals)


def test_a_group_cut_grown_or_flipped_does_not_open():
    seals = Seals(KEY, "w1", JOB)
    raw = _part(seals, RESULTS)
    start, end = _group(raw)
    with pytest.raises(IntegrityError, match="truncated"):
        open_groups(raw[:-1], "p", seals)
    with pytest.raises(IntegrityError, match="truncated"):
        list(iter_results([raw[:-1]], "p", seals))
    grown = raw[: len(MAGIC_GROUPS)] + struct.pack(">I", end - start + 1) + raw[start:] + b"x"
    with pytest.raises(ResultRefused):
        open_groups(grown, "p", seals)
    flipped = bytearray(raw)
    flipped[-20] ^= 1
    with pytest.raises(ResultRefused):
        open_groups(bytes(flipped), "p", seals)


def test_a_group_of_another_part_spliced_in_does_not_open():
    """A group sealed for another job, framed into this job's part, fails; so does this job's
    group carried into another job's part."""
    mine, theirs = Seals(KEY, "w1", JOB), Seals(KEY, "w1", "rqp-w1-c00000001-0")
    foreign = b"".join(seal_group(theirs, [(12, b"1"), (13, b"2")]))
    raw = _part(mine, RESULTS) + foreign
    with pytest.raises(ResultRefused, match=r"record 12 .*1 other results"):
        open_groups(raw, "p", mine)


def test_a_part_of_the_older_per_result_form_still_reads():
    """A part written before the upgrade (``RQPP1``: each result sealed on its own)."""
    seals = Seals(KEY, "w1", JOB)
    raw = seal_part(seals, RESULTS)
    assert list(iter_results([raw[i : i + 9] for i in range(0, len(raw), 9)], "p", seals)) == RESULTS
    with pytest.raises(ResultRefused, match="record 4"):  # its AAD names the record; the key, the job
        list(iter_results([raw], "p", Seals(bytes(32), "w1", "rqp-w1-c00000000-1")))
    with pytest.raises(IntegrityError, match="not an rqp result part"):
        open_groups(raw, "p", seals)  # the whole-part reader of groups says it is not one


def test_an_empty_part_or_junk_is_refused():
    seals = Seals(KEY, "w1", JOB)
    with pytest.raises(IntegrityError, match="empty"):
        list(iter_results([], "p", seals))
    with pytest.raises(IntegrityError, match="not an rqp result part"):
        list(iter_results([os.urandom(40)], "p", seals))
