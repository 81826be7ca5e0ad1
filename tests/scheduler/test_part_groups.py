"""Consolidation's readers of one part (``_note_lines`` whole, ``_lines`` in pieces) on the current
form (``RQPP2``: results sealed a group at a time under the committing job's key, the group's AAD
naming its record ids): the lines are the reference reader's, a group does not open for another
job, and a part that is cut, spliced or short of a record is refused with one line, as before."""

from __future__ import annotations

from typing import Any

import pytest

from rqp.parts import PartWriter, seal_group
from rqp.signing import TrustStore
from rqp.status import ChunkNote
from rqp.workload import Workload
from rqp_scheduler.consolidate import StateError, _lines, _note_lines, _part_name

JOB = "rqp-groups-c00000000-1"
RESULTS = [(i, b'{"n":%d}' % (i * 10)) for i in range(4, 9)]


class _Store:
    def __init__(self) -> None:
        self.data = b""

    def put(self, name: str, data: bytes) -> None:
        self.data = data


@pytest.fixture
def w(world: Any) -> Workload:
    wid = world.pack("groups", [{"n": i} for i in range(8)])
    return Workload.open(world.store, world.keys, wid, TrustStore.from_file(world.signer.trusted))


def _note(runs: tuple[tuple[int, int, int], ...], not_done: tuple[int, ...] = (), job: str = JOB) -> ChunkNote:
    return ChunkNote("c00000000", job, runs, not_done, None, None, None, "vm:1")


def _sealed(w: Workload, results: list[tuple[int, bytes]], job: str = JOB, group_bytes: int | None = None) -> bytes:
    out = _Store()
    with PartWriter(w.scope(job), group_bytes=group_bytes) as part:
        part.add(results)
        part.upload(out, "p")  # type: ignore[arg-type]
    return out.data


def _reference(world: Any, w: Workload, note: ChunkNote) -> tuple[list[int], list[bytes]]:
    pairs = sorted(_lines(world.store, w, note))
    return [rid for rid, _ in pairs], [line for _, line in pairs]


@pytest.mark.parametrize("group_bytes", [None, 8])
def test_a_part_of_groups_reads_as_the_reference_lines(world, w, group_bytes):
    note = _note(((4, 5, 1),))
    world.store.put(_part_name(w, note), _sealed(w, RESULTS, group_bytes=group_bytes))
    ids, lines = _note_lines(world.store, w, note)
    assert (ids, lines) == _reference(world, w, note)
    assert ids == [4, 5, 6, 7, 8] and lines[0] == b'{"id":4,"result":{"n":40}}\n'


@pytest.mark.parametrize(
    ("note", "results"),
    [
        pytest.param(_note(((4, 5, 1),), not_done=(6,)), RESULTS, id="an-entry-not-done"),
        pytest.param(_note(((4, 5, 1),)), RESULTS[2:] + RESULTS[:2], id="results-out-of-order"),
        pytest.param(_note(((7, 2, 2), (4, 3, 1))), RESULTS, id="runs-not-in-record-order"),
    ],
)
def test_any_other_part_of_groups_gives_the_note_s_records_in_record_order(world, w, note, results):
    world.store.put(_part_name(w, note), _sealed(w, results))
    expected = _reference(world, w, note)
    assert _note_lines(world.store, w, note) == expected
    assert expected[0] == sorted(note.done_ids())


def test_a_part_of_another_attempt_is_refused_with_one_line(world, w):
    """Generation 0's part put where generation 1's belongs (its name is in the note)."""
    note = _note(((4, 5, 1),))
    world.store.put(_part_name(w, note), _sealed(w, RESULTS, job="rqp-groups-c00000000-0"))
    for read in (lambda: _note_lines(world.store, w, note), lambda: list(_lines(world.store, w, note))):
        with pytest.raises(StateError, match=f"the result of record 4 in chunk c00000000's part is not job {JOB}'s"):
            read()


def test_a_cut_part_is_refused_with_one_line(world, w):
    note = _note(((4, 5, 1),))
    world.store.put(_part_name(w, note), _sealed(w, RESULTS)[:-3])
    for read in (lambda: _note_lines(world.store, w, note), lambda: list(_lines(world.store, w, note))):
        with pytest.raises(StateError, match="is truncated") as refused:
            read()
        # a part is a blob: the line names the blob store beside Redis (the twelfth review, F4)
        assert str(refused.value).startswith(f"a result part of {w.id} failed authentication: ")
        assert "Find who can write to the blob store or to this Redis" in str(refused.value)


def test_a_group_dropped_from_a_part_leaves_its_records_missing(world, w):
    """Each group opens on its own, so a part with a whole group taken out still opens -- and the
    note's records that group held are missing: refused as a missing result."""
    note = _note(((4, 5, 1),))
    raw = _sealed(w, RESULTS, group_bytes=8)  # a group per result (each is 8+ bytes)
    first = int.from_bytes(raw[5:9], "big")
    short = raw[:5] + raw[9 + first :]  # the first group (record 4's) dropped
    world.store.put(_part_name(w, note), short)
    for read in (lambda: _note_lines(world.store, w, note), lambda: list(_lines(world.store, w, note))):
        with pytest.raises(StateError, match="the result of record 4 is missing from chunk c00000000's part"):
            read()


def test_a_group_of_another_job_spliced_into_a_part_is_refused(world, w):
    note = _note(((4, 6, 1),))
    foreign = b"".join(seal_group(w.scope("rqp-groups-c00000001-0"), [(9, b"1")]))
    world.store.put(_part_name(w, note), _sealed(w, RESULTS) + foreign)
    with pytest.raises(StateError, match=f"the result of record 9 in chunk c00000000's part is not job {JOB}'s"):
        _note_lines(world.store, w, note)


def test_a_workload_with_parts_of_both_forms_consolidates_every_result(world):
    """An upgrade mid-workload: chunks committed by an older processor left parts of the
    per-result form (``RQPP1``), the rest are groups. Consolidation reads both; every record's
    result is there once."""
    import json

    from rqp.cli.results import read_results
    from rqp.ledger import Ledger
    from rqp.parts import open_groups, seal_part

    wid = world.pack("mixed", [{"n": i} for i in range(12)])
    run = world.run(wid)
    proc = world.processor()
    try:
        run.step()
        world.work(proc)
        w = world.backends().workload(wid)
        led = Ledger(world.r, wid)
        committed = list(led.notes())
        assert len(committed) > 1
        chunk, sealed = committed[0]
        note = ChunkNote.open(w, chunk, sealed)
        name = _part_name(w, note)
        seals = w.scope(note.job)
        ids, results = open_groups(world.store.get(name), name, seals)
        assert ids == list(note.done_ids())
        world.store.put(name, seal_part(seals, list(zip(ids, results, strict=True))))  # as an older one wrote it
        world.run_to_end(run, proc)
    finally:
        proc.pool.close()
    lines = [json.loads(x) for x in read_results(world.store, world.backends().workload(wid))]
    assert sorted((d["id"], d["result"]) for d in lines) == [(i, i * 2) for i in range(12)]
