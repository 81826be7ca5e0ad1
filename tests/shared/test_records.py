"""Record parsing: each JSON Lines record's line in the file, kept as a few change points."""

from __future__ import annotations

import random

from rqp.jobs import ChunkSpec
from rqp.records import LineMap, parse_records


def _data(rng: random.Random, n: int) -> tuple[bytes, list[int]]:
    """``n`` records with blank (and whitespace-only, and CRLF) lines strewn among them; the
    1-based line of each record."""
    out: list[bytes] = []
    where: list[int] = []
    for i in range(n):
        while rng.random() < 0.2:
            out.append(rng.choice([b"", b"  ", b"\r", b"\t"]))
        where.append(len(out) + 1)
        out.append(b'{"n": %d}' % i)
    return b"\n".join(out) + (b"\n" if rng.random() < 0.5 else b""), where


def _split(data: bytes, rng: random.Random) -> list[bytes]:
    """The decrypted data as it streams: pieces that cut lines anywhere."""
    pieces, pos = [], 0
    while pos < len(data):
        step = rng.randint(1, 40)
        pieces.append(data[pos : pos + step])
        pos += step
    return pieces


def test_every_record_knows_its_line_however_the_stream_is_cut():
    rng = random.Random(7)
    for _ in range(50):
        data, where = _data(rng, rng.randint(0, 60))
        lines = LineMap()
        got = list(parse_records("jsonl", _split(data, rng), lines=lines))
        assert len(got) == len(where)
        assert [lines.line_of(rid) for rid in range(len(where))] == where
        # a chunk's spec carries only its own change points, and names every line from them
        for first in range(len(where)):
            last = min(len(where) - 1, first + rng.randint(0, 9))
            spec = ChunkSpec("w", "c0", ((first, last - first + 1, 1),), 3, 0.0, 0.0, lines=lines.within(first, last))
            again = ChunkSpec.from_json(spec.to_json())
            assert [again.line_of(r) for r in range(first, last + 1)] == where[first : last + 1]


def test_data_without_blank_lines_keeps_nothing():
    lines = LineMap()
    list(parse_records("jsonl", [b'{"n": %d}\n' % i for i in range(10_000)], lines=lines))
    assert lines.points == []
    assert b'"l"' not in ChunkSpec("w", "c0", ((0, 10, 1),), 3, 0.0, 0.0, lines=lines.within(0, 9) or None).to_json()
