"""Consolidation's walk of a results part (``_note_lines``): the usual part -- well formed, every
result opening under its job's key, the note's records in record order -- is read in one inline
loop (``_part_lines``); any other part takes the full path. Both give the lines the reference
reader (``_lines``: one generator step per record) gives, and the same one-line refusal."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from rqp.parts import ENTRY, MAGIC, seal_part
from rqp.signing import TrustStore
from rqp.status import ChunkNote
from rqp.workload import Workload
from rqp_scheduler.consolidate import StateError, _lines, _note_lines, _part_name

JOB = "rqp-parts-c00000000-0"
#: the module (the package names a function ``consolidate`` too)
consolidate = importlib.import_module("rqp_scheduler.consolidate")


@pytest.fixture
def w(world: Any) -> Workload:
    wid = world.pack("parts", [{"n": i} for i in range(8)])
    return Workload.open(world.store, world.keys, wid, TrustStore.from_file(world.signer.trusted))


def _note(runs: tuple[tuple[int, int, int], ...], not_done: tuple[int, ...] = ()) -> ChunkNote:
    return ChunkNote("c00000000", JOB, runs, not_done, None, None, None, "vm:1")


def _put(world: Any, w: Workload, note: ChunkNote, results: list[tuple[int, bytes]]) -> None:
    world.store.put(_part_name(w, note), seal_part(w.scope(JOB), results))


def _full_path_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = consolidate._entries

    def counted(*args: Any, **kwargs: Any) -> Any:
        seen.append("entries")
        return real(*args, **kwargs)

    monkeypatch.setattr(consolidate, "_entries", counted)
    return seen


def _reference(world: Any, w: Workload, note: ChunkNote) -> tuple[list[int], list[bytes]]:
    pairs = sorted(_lines(world.store, w, note))  # _note_lines gives record order
    return [rid for rid, _ in pairs], [line for _, line in pairs]


RESULTS = [(i, b'{"n":%d}' % (i * 10)) for i in range(4, 9)]


def test_the_usual_part_is_read_inline_with_the_reference_lines(world, w, monkeypatch):
    note = _note(((4, 5, 1),))
    _put(world, w, note, RESULTS)
    expected = _reference(world, w, note)
    full = _full_path_reads(monkeypatch)
    assert _note_lines(world.store, w, note) == expected
    assert expected[1][0] == b'{"id":4,"result":{"n":40}}\n'
    assert full == []


@pytest.mark.parametrize(
    ("note", "results"),
    [
        pytest.param(_note(((4, 5, 1),), not_done=(6,)), RESULTS, id="an-entry-not-done"),
        pytest.param(_note(((4, 5, 1),)), RESULTS[2:] + RESULTS[:2], id="entries-out-of-order"),
        pytest.param(_note(((7, 2, 2), (4, 3, 1))), RESULTS, id="runs-not-in-record-order"),
    ],
)
def test_any_other_part_takes_the_full_path_with_the_same_lines(world, w, monkeypatch, note, results):
    _put(world, w, note, results)
    expected = _reference(world, w, note)
    full = _full_path_reads(monkeypatch)
    assert _note_lines(world.store, w, note) == expected
    assert full


def test_a_result_of_another_record_is_refused_the_same_way(world, w):
    note = _note(((4, 5, 1),))
    forged = seal_part(w.scope(JOB), [(4, b"1")])[len(MAGIC) + ENTRY.size :]  # sealed for record 4
    good = seal_part(w.scope(JOB), RESULTS[:2])
    part = good + b"".join(ENTRY.pack(rid, len(forged)) + forged for rid in (6, 7, 8))
    world.store.put(_part_name(w, note), part)
    with pytest.raises(StateError, match=r"the result of record 6 in chunk c00000000's part is not job "):
        _note_lines(world.store, w, note)


def test_a_truncated_part_is_refused_the_same_way(world, w):
    note = _note(((4, 5, 1),))
    world.store.put(_part_name(w, note), seal_part(w.scope(JOB), RESULTS)[:-3])
    with pytest.raises(StateError, match="is truncated"):
        _note_lines(world.store, w, note)
