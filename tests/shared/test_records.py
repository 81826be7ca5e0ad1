"""Record parsing: each JSON Lines record's line in the file, kept as a few change points; poisoned
data (nesting, bad bytes, over-long lines and fields, NaN) fails one record each, never the reader."""

from __future__ import annotations

import json
import random
from typing import Any

from rqp import jsonsafe, sandbox
from rqp.config import Settings
from rqp.jobs import ChunkSpec
from rqp.records import Limits, LineMap, parse_records, record_key
from rqp.sandbox import _runner


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


# ---------------------------------------------------------------- poisoned data (issue #23, item 5)
def _jsonl_through_the_runner(data: bytes, limits: Limits | None = None) -> list[tuple[int, str]]:
    """Each record as the scheduler reads it and a processor decodes it: (line, error or "")."""
    lines = LineMap()
    read = list(parse_records("jsonl", [data], lines=lines, limits=limits))
    script = _runner.load(b"def process(r):\n    return r\n", "w")
    out: list[tuple[int, str]] = []
    got: list[tuple[int, bytes]] = []
    script.run([p for p, e in read if e is None], lambda k, d: got.append((k, d)))
    decoded = iter(got)
    for rid, (_, error) in enumerate(read):
        why = error
        if why is None:
            kind, text = next(decoded)
            why = "" if kind == sandbox.OK else text.decode()
        out.append((lines.line_of(rid), why))
    return out


def test_a_deeply_nested_record_fails_alone_without_recursion():
    data = b'{"n": 1}\n{"n": 2}\n' + b"[" * 100_000 + b"\n" + b'{"a": ' * 100_000 + b'\n{"n": 5}\n'
    got = _jsonl_through_the_runner(data)
    assert [line for line, _ in got] == [1, 2, 3, 4, 5]
    assert [e for _, e in got] == ["", "", *["malformed record: nested deeper than 512 levels"] * 2, ""]
    key, error = record_key(b'{"id": ' + b"[" * 100_000, "id", 0, LineMap())
    assert key is None and error == "malformed record at line 1: nested deeper than 512 levels"
    assert record_key(b'{"id": "a"}', "id", 0, LineMap()) == ("a", None)


def test_nan_infinity_huge_numbers_and_bad_bytes_each_fail_one_json_lines_record():
    data = b"\xef\xbb\xbf" + b"\n".join(
        [b'{"ok": 1}', b'{"v": NaN}', b'{"v": -Infinity}', b'{"v": 1e999}', b'{"v": ' + b"9" * 5000 + b"}",
         b'{"v": "\xff"}', b'{"v": "a\x00b"}', b"\xef\xbb\xbf{}", b'{"ok": 2.5}']
    )  # fmt: skip
    errors = [e for _, e in _jsonl_through_the_runner(data)]
    assert errors[0] == "" and errors[-1] == ""  # the leading BOM is dropped
    assert errors[1] == "malformed record: NaN is not JSON (use null or a string)"
    assert errors[2] == "malformed record: -Infinity is not JSON (use null or a string)"
    assert errors[3] == "malformed record: number 1e999 is too large for a 64-bit float"
    assert errors[4].startswith("malformed record: Exceeds the limit (4300 digits)")
    assert errors[5] == "malformed record: not valid UTF-8 (byte 7)"
    assert errors[6].startswith("malformed record: not valid JSON (Invalid control character")
    assert errors[7] == "malformed record: not valid JSON (a byte order mark, U+FEFF, before the value)"


def test_a_json_lines_line_over_the_limit_fails_alone_and_is_not_held():
    pieces = [b'{"n": 1}\n', b"[" * 50, b"1" * 50, b"]" * 50, b'\n{"n": 3}\n', b"x" * 300]
    got = list(parse_records("jsonl", pieces, limits=Limits(max_record_bytes=100)))
    assert got == [
        (b'{"n": 1}', None),
        (b"", "malformed record at line 2: longer than 100 bytes (RQP_MAX_RECORD_BYTES)"),
        (b'{"n": 3}', None),
        (b"", "malformed record at line 4: longer than 100 bytes (RQP_MAX_RECORD_BYTES)"),
    ]


def _csv(data: bytes, limits: Limits | None = None) -> list[tuple[Any, str | None]]:
    return [(json.loads(p) if p else None, e) for p, e in parse_records("csv", [data], limits=limits)]


def test_csv_poison_fails_its_row_alone_with_its_line():
    data = b"\n".join(
        [b"\xef\xbb\xbfname,text", b"a,1", b"b\xff,2", b'c,"' + b"x" * 200_000 + b'"', b"d,4",
         b'e,"multi\nline"', b'f,"x"y', b"g,\x00", b'h,"never closed\ni,9']
    )  # fmt: skip
    assert _csv(data) == [
        ({"name": "a", "text": "1"}, None),
        (None, "malformed CSV row at line 3: field 'name' is not valid UTF-8 (character 2)"),
        (None, "malformed CSV row at line 4: a field longer than 131,072 characters (RQP_MAX_CSV_FIELD_BYTES)"),
        ({"name": "d", "text": "4"}, None),
        ({"name": "e", "text": "multi\nline"}, None),
        (None, "malformed CSV row at line 8: ',' expected after '\"'"),
        ({"name": "g", "text": "\x00"}, None),
        (None, "malformed CSV row at line 10: a quoted field opened in this row is never closed"),
    ]


def test_a_csv_line_over_the_record_limit_fails_alone():
    data = b"k,v\n1,2\n3," + b"4" * 500 + b"\n5,6\n"
    assert _csv(data, Limits(max_record_bytes=100)) == [
        ({"k": "1", "v": "2"}, None),
        (None, "malformed CSV row at line 3: a line longer than 100 characters (RQP_MAX_RECORD_BYTES)"),
        ({"k": "5", "v": "6"}, None),
    ]


def test_a_broken_csv_header_fails_every_row_with_its_reason():
    got = _csv(b"a,\xff\n1,2\n3,4\n")
    why = "the header (line 1) is malformed: field 2 is not valid UTF-8 (character 1); fix the data's first line"
    assert [e for _, e in got] == [f"malformed CSV row at line {n}: {why}" for n in (2, 3)]


def test_results_with_nan_or_infinity_fail_their_record_and_results_stay_json():
    script = _runner.load(
        b"def process(r):\n    return {'s': [1, float(r)]} if isinstance(r, str) else [[r]] * 3\n", "w"
    )
    got: list[tuple[int, bytes]] = []
    script.run([b'"nan"', b'"-inf"', b"2", b'"1.5"'], lambda k, d: got.append((k, d)))
    assert got == [
        (sandbox.NOT_JSON, b"result is not valid JSON: NaN at $.s[1]"),
        (sandbox.NOT_JSON, b"result is not valid JSON: -Infinity at $.s[1]"),
        (sandbox.OK, b"[[2],[2],[2]]"),
        (sandbox.OK, b'{"s":[1,1.5]}'),
    ]
    assert jsonsafe.result_line(b'{"id":4,"result":NaN}') == (
        b'{"id":4,"error":"result is not valid JSON: NaN is not JSON (use null or a string)"}'
    )
    assert jsonsafe.result_line(b'{"id":4,"result":[1]}') == b'{"id":4,"result":[1]}'
    assert json.loads(jsonsafe.result_line(b"garbage\xff")) == {
        "id": None,
        "error": "result is not valid JSON: not valid UTF-8 (byte 7)",
    }


def test_limits_are_settings():
    s = Settings.load(env={"RQP_MAX_JSON_DEPTH": "8", "RQP_MAX_RECORD_BYTES": "1000", "RQP_MAX_CSV_FIELD_BYTES": "10"})
    assert Limits.from_settings(s) == Limits(1000, 8, 10)
    assert Limits.from_settings(Settings()) == Limits() and Limits().max_json_depth == jsonsafe.MAX_JSON_DEPTH
    assert _csv(b"a\n" + b"x" * 11 + b"\n", Limits.from_settings(s))[0][1] == (
        "malformed CSV row at line 2: a field longer than 10 characters (RQP_MAX_CSV_FIELD_BYTES)"
    )
