"""The proof's bit arithmetic: a chunk note's done records as ranges, marked a byte at a time,
and a record claimed twice found -- checked against a plain set on random ranges."""

from __future__ import annotations

import random

from rqp.status import ChunkNote
from rqp_scheduler.consolidate import _bit, _mark, _spans


def test_spans_are_the_notes_done_records():
    note = ChunkNote("c1", "j", ((0, 10, 1), (20, 5, 2)), (0, 3, 4, 9, 22), None, None, None, None)
    spans = list(_spans(note))
    assert spans == [(1, 2), (5, 8), (20, 21), (23, 24)]
    assert [r for a, b in spans for r in range(a, b + 1)] == list(note.done_ids())


def test_mark_sets_ranges_and_names_the_first_record_claimed_twice():
    rng = random.Random(14)
    for _ in range(3000):
        bits, claimed = bytearray(26), set()
        for _ in range(6):
            a = rng.randrange(200)
            b = rng.randrange(a, 200)
            clash = _mark(bits, a, b)
            assert clash == min((r for r in range(a, b + 1) if r in claimed), default=None)
            if clash is None:
                claimed.update(range(a, b + 1))
            assert {r for r in range(200) if _bit(bits, r)} == claimed  # a refused range sets nothing
