"""Property tests over the readers and the result encoder (issue #23, item 5): for arbitrary
bytes, every record ends as a record or as a failure with a one-line reason -- never an exception
out of a reader, never a record lost -- and what the encoder writes always parses with a strict
JSON parser.

CI runs the ``ci`` profile (a few hundred examples each); ``make fuzz`` runs the same properties
with ``HYPOTHESIS_PROFILE=fuzz`` for much longer."""

from __future__ import annotations

import io
import itertools
import json
import math
import os
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rqp import jsonsafe, sandbox
from rqp.records import IterStream, Limits, LineMap, parse_records
from rqp.sandbox import _runner

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BOM = b"\xef\xbb\xbf"
#: small limits, so that arbitrary data reaches them
LIMITS = Limits(max_record_bytes=700, max_json_depth=512, max_csv_field_bytes=60)

#: fragments that poison parsers, mixed with arbitrary bytes
POISON = [b"[", b"{", b"]", b"}", b'"', b"\\", b",", b":", b" ", b"\n", b"\r\n", b"\r", b"NaN", b"Infinity",
          b"-Infinity", b"1e999", b"9" * 40, b"-0", b"1.5", b"null", b"true", b'{"a":', b"[" * 520, b"x" * 710,
          BOM, b"\x00", b"\xff", b"\xc3", b"\xc3\xa9", b"\xed\xa0\x80", b'"\\ud800"']  # fmt: skip


def _data(good: list[bytes] | None = None, head: list[bytes] | None = None) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, poison fragments and (``good``) well-formed lines, after one of ``head``."""
    pieces = st.one_of(st.binary(max_size=24), st.sampled_from(POISON), *([st.sampled_from(good)] if good else []))
    body = st.lists(pieces, max_size=40).map(b"".join)
    return st.tuples(st.sampled_from(head or [b""]), body).map(b"".join)


JSONL = _data(good=[b'{"n": 1}\n', b"[1, 2.5, null]\n", b'"s"\n', b"\n", b"[" * 300 + b"]" * 300 + b"\n"])
CSV = _data(good=[b"1,2\n", b'"q,1",2\n', b'"multi\nline",3\n', b"\n"], head=[b"", b"a,b\n", BOM + b"k,v\n"])


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    """The data as it streams: pieces cut anywhere (BOMs and UTF-8 sequences included)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _strict(text: str | bytes) -> Any:
    """A strict JSON parser of the test's own: no NaN/Infinity literal, no number beyond a float."""

    def constant(name: str) -> None:
        raise AssertionError(f"{name} in output that must be strict JSON")

    def finite(s: str) -> float:
        value = float(s)
        assert math.isfinite(value), s
        return value

    return json.loads(text, parse_constant=constant, parse_float=finite)


def _one_line(reason: str) -> None:
    assert reason.strip() and "\n" not in reason and "Traceback" not in reason, reason


IDENTITY = _runner.load(b"def process(record):\n    return record\n", "prop")


@given(JSONL, st.lists(st.integers(min_value=0), max_size=6))
def test_every_json_lines_record_ends_done_or_failed_with_its_line(data, cuts):
    lines = LineMap()
    read = list(parse_records("jsonl", _cut(data, cuts), lines=lines, limits=LIMITS))
    # never a record lost: one record per non-blank line (a leading BOM is not part of line 1)
    expected = [n for n, line in enumerate(data.removeprefix(BOM).split(b"\n"), 1) if line.strip()]
    assert [lines.line_of(rid) for rid in range(len(read))] == expected
    outcomes: list[tuple[int, bytes]] = []
    IDENTITY.run([p for p, e in read if e is None], lambda k, d: outcomes.append((k, d)))
    decoded = iter(outcomes)
    for rid, (payload, error) in enumerate(read):
        if error is not None:  # the scheduler's reader failed it, naming its line
            event("jsonl: failed by the reader")
            _one_line(error)
            assert error.startswith(f"malformed record at line {lines.line_of(rid)}: "), error
            continue
        kind, out = next(decoded)  # the processor's decoding (the runner, in process)
        event(f"jsonl: {'done' if kind == sandbox.OK else out.decode().split(' (')[0][:40]}")
        if kind == sandbox.OK:
            assert _strict(out) == _strict(payload)
        else:
            assert kind == sandbox.MALFORMED, (kind, out)
            _one_line(out.decode())
            assert out.startswith(b"malformed record: ")
    assert next(decoded, None) is None


def _csv_lines(data: bytes) -> list[bytes]:
    return data.removeprefix(BOM).split(b"\n")


@given(CSV, st.lists(st.integers(min_value=0), max_size=6))
def test_every_csv_row_ends_a_record_or_a_failure_with_its_line(data, cuts):
    got = list(parse_records("csv", _cut(data, cuts), limits=LIMITS))
    last = len(data.splitlines()) + 1
    header: list[str] | None = None
    for payload, error in got:
        if error is not None:
            event(f"csv: {error.split(': ', 1)[1][:30]}")
            _one_line(error)
            assert error.startswith("malformed CSV row at line ")
            assert 2 <= int(error.split()[5].rstrip(":")) <= last, error
            continue
        doc = _strict(payload)
        assert isinstance(doc, dict) and all(isinstance(v, str) for v in doc.values())
        assert len(payload) <= LIMITS.max_record_bytes
        header = header or list(doc)
        assert list(doc) == header
        payload.decode("utf-8")  # invalid bytes never reach a record
    if b'"' not in data and b"\r" not in data:  # one row per line: none lost
        rows = [line for line in _csv_lines(data) if line]
        assert len(got) == max(len(rows) - 1, 0)


@given(
    st.lists(
        st.sampled_from([b"a", b"1", b",", b"\n", b"\xff", b"x" * 70, b"y" * 710, b"\x00", BOM, b" "]), max_size=60
    )
)
def test_csv_without_quotes_loses_no_row(pieces):
    data = b"".join(pieces)
    got = list(parse_records("csv", [data], limits=LIMITS))
    rows = [line for line in _csv_lines(data) if line]
    assert len(got) == max(len(rows) - 1, 0)
    for _, error in got:
        assert error is None or error.startswith("malformed CSV row at line "), error


PARSE_SCRIPT = b"""
import json

def parse(stream):
    for line in stream:
        text = line.decode("utf-8", "replace").strip()
        try:
            yield json.loads(text)  # lenient on purpose: NaN, Infinity, 1e999 become floats
        except (ValueError, RecursionError):
            yield text

def process(record):
    return record
"""


@given(JSONL, st.lists(st.integers(min_value=0), max_size=6))
def test_every_record_a_scripts_parse_yields_is_strict_json_or_a_failure(data, cuts):
    script = _runner.load(PARSE_SCRIPT, "prop-parse")
    got = list(script.parse_records(io.BufferedReader(IterStream(_cut(data, cuts)))))
    assert len(got) == data.count(b"\n") + (bool(data) and not data.endswith(b"\n"))  # a binary stream's lines
    for kind, payload in got:
        event(f"parse(): {'record' if kind == sandbox.OK else payload.decode()[51:70]}")
        if kind == sandbox.OK:
            _strict(payload)
        else:
            assert kind == sandbox.NOT_JSON
            text = payload.decode()
            _one_line(text)
            assert text.startswith("parse() produced a record that is not valid JSON: "), text


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=25,
)


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(map(_non_finite, value))
    if isinstance(value, dict):
        return any(map(_non_finite, value.values()))
    return False


@given(JSON_VALUES)
def test_the_result_encoder_writes_strict_json_or_says_where_it_cannot(value):
    try:
        text = jsonsafe.dumps(value)
    except jsonsafe.JSONRejected as exc:
        assert _non_finite(value), exc
        where = str(exc)
        assert where.split(" at $", maxsplit=1)[0] in ("NaN", "Infinity", "-Infinity"), where
        _one_line(where)
    else:
        assert not _non_finite(value)
        assert _strict(text) == value
        assert jsonsafe.loads(text) == value


@given(st.one_of(st.binary(max_size=80), _data()), st.integers(min_value=0, max_value=10**6))
def test_rqp_results_prints_strict_json_whatever_a_host_sent(result, rid):
    line = b'{"id":%d,"result":%s}' % (rid, result)
    out = jsonsafe.result_line(line)
    doc = _strict(out)
    assert doc["id"] == rid
    assert ("result" in doc) != ("error" in doc)
    if "error" in doc:
        assert doc["error"].startswith("result is not valid JSON: ")
    else:
        assert out == line


#: enough well-formed lines that the format probe is done before the arbitrary data begins, so the
#: reader's whole-piece pass (a piece of plain records goes through in one go) is reached
PROBED = b'{"n": 1}\n' * 25


@given(JSONL, st.lists(st.integers(min_value=0), max_size=6))
def test_json_lines_read_in_pieces_match_the_line_by_line_model(data, cuts):
    """Whatever the pieces, the reader gives what one line at a time says: a record per non-blank
    line (CR stripped), over-long ones failed naming their line, the lines learned right."""
    data = PROBED + data + PROBED
    lines = LineMap()
    read = list(parse_records("jsonl", _cut(data, cuts), lines=lines, limits=LIMITS))
    model: list[tuple[int, bytes, bool]] = []
    for n, line in enumerate(data.split(b"\n"), 1):
        if line.strip():
            record = line.rstrip(b"\r")
            model.append((n, record, len(record) > LIMITS.max_record_bytes))
    assert [lines.line_of(rid) for rid in range(len(read))] == [n for n, _, _ in model]
    for (payload, error), (n, record, too_long) in zip(read, model, strict=True):
        if too_long:
            assert payload == b"" and error is not None and error.startswith(f"malformed record at line {n}: longer")
        else:
            assert (payload, error) == (record, None)
