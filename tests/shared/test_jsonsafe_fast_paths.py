"""The strict JSON reader's and writer's fast paths (issue 28, the script host's µs per record):
``loads`` reads the usual text -- one value filling it, no whitespace around it -- with the
strict scanner alone, and ``dumps`` calls a C encoder made once and skips the name walk for a
flat dict of string names. Both must give exactly what the full paths give: the same value,
the same text, the same one-line refusal, for every kind of input."""

from __future__ import annotations

import json
import math

import pytest

from rqp.sandbox import _jsonsafe as J

TEXTS = [
    '{"id": 1, "account": "ACC-1", "amount": 12.5, "memo": "xxxx"}',
    '{"a":1}',
    "[1,2,3]",
    '"just a string"',
    "42",
    "-0.0",
    "true",
    "null",
    ' {"a":1}',  # whitespace before: the full path
    '{"a":1} ',  # after
    '{"a":1}\n',
    "\t[1]\r\n",
    '{"a":1}{"b":2}',  # extra data
    '{"a":1} x',
    "[1,2",  # truncated
    "",
    "   ",
    '{"a":1,"a":2}',  # duplicate name
    '[{"x":{"y":1,"y":2}}]',
    "NaN",
    '{"a":Infinity}',
    "[-Infinity]",
    "1e999",
    '{"a":[1e400]}',
    "\ufeff{}",  # byte order mark
    "1" * 5000,  # over the digit limit
    "[" * 600 + "]" * 600,  # over MAX_JSON_DEPTH
    "[" * 100 + "]" * 100,
    '{"a":"\\ud800"}',  # a lone surrogate escape reads (the role refuses it later)
    "{'a':1}",
    '{"a":01}',
]


def _reference_loads(text: str) -> object:
    """``loads`` as it was: ``JSONDecoder.decode`` for every text."""
    if text.startswith("\ufeff"):
        raise J.JSONRejected("not valid JSON (a byte order mark, U+FEFF, before the value)")
    if J.depth_exceeds(text):
        raise J.JSONRejected(f"nested deeper than {J.MAX_JSON_DEPTH} levels")
    try:
        return J._DECODER.decode(text)
    except J.JSONRejected:
        raise
    except json.JSONDecodeError as exc:
        raise J.JSONRejected(f"not valid JSON ({exc})") from None
    except ValueError as exc:
        raise J.JSONRejected(" ".join(str(exc).split(";")[0].split())) from None


def _outcome(fn, arg):  # type: ignore[no-untyped-def]
    try:
        return ("value", json.dumps(fn(arg), sort_keys=True))
    except J.JSONRejected as exc:
        return ("refused", str(exc))


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_loads_fast_path_reads_and_refuses_exactly_as_the_full_decoder(text):
    got = _outcome(J.loads, text)
    assert got == _outcome(_reference_loads, text)
    assert got == _outcome(J.loads, text.encode("utf-8", "surrogatepass"))


def test_loads_reads_the_usual_record_without_the_full_decoder(monkeypatch):
    """The fast path is taken: a record filling its text never reaches ``JSONDecoder.decode``
    (which costs two regex matches and two calls more per record)."""

    def refuse(text: str) -> object:
        raise AssertionError("the full decoder ran for a text the scanner reads alone")

    monkeypatch.setattr(J._DECODER, "decode", refuse)
    assert J.loads(b'{"id":7,"amount":1.5,"tags":["a","b"]}') == {"id": 7, "amount": 1.5, "tags": ["a", "b"]}
    with pytest.raises(AssertionError):
        J.loads(b' {"id":7}')  # whitespace around the value: the full decoder's to read


class _Repeats(dict):  # type: ignore[type-arg]
    def items(self):  # type: ignore[no-untyped-def,override]
        return [("score", 1), ("score", 2)]


VALUES: list[object] = [
    {"account_hash": "abc", "amount_cents": 12, "flagged": False},
    {"a": None, "b": 1.5, "c": "\u00e9\U0001f600"},
    [1, "two", 3.0, None, True],
    "text",
    7,
    -0.0,
    1e300,
    {"nested": {"a": [1, {"b": 2}]}},
    {1: "int key", "x": 2},
    {True: 1, "true": 2},
    _Repeats(score=0),
    {"n": math.nan},
    [math.inf],
    {"s": {1, 2}},
    (1, 2),
]


def _reference_dumps(value: object) -> str:
    """What ``JSONEncoder.encode`` writes for the value (before the checks ``dumps`` adds)."""
    return J._ENCODER.encode(value)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_dumps_writes_and_refuses_exactly_as_before(value):
    try:
        expected: tuple[str, str] = ("text", _reference_dumps(value))
    except (ValueError, TypeError) as exc:
        expected = ("error", type(exc).__name__)
    try:
        got: tuple[str, str] = ("text", J.dumps(value))
    except J.JSONRejected as exc:
        got = ("error", "ValueError")
        assert "\n" not in str(exc)
    except TypeError:
        got = ("error", "TypeError")
    if expected[0] == "text" and got[0] == "error":
        # refused on top of what the encoder writes: only a name written twice
        assert "score" in expected[1] or '"1"' in expected[1] or '"true"' in expected[1]
    else:
        assert got == expected


def test_dumps_refuses_a_value_that_contains_itself():
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(J.JSONRejected, match="Circular reference"):  # as the full encoder says
        J.dumps(loop)
    d: dict[str, object] = {}
    d["self"] = d
    with pytest.raises(J.JSONRejected):
        J.dumps(d)
    assert J.dumps({"after": "a refusal"}) == '{"after":"a refusal"}'  # nothing left behind


def test_flat_dict_shortcut_agrees_with_the_name_walk():
    for value in [*VALUES, {}, {"a": {"b": 1}}, {"a": [1]}, dict.fromkeys(map(str, range(300)), 1)]:
        if J._flat_str_dict(value):
            assert J.names_distinct(value)
