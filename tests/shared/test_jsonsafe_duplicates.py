"""Strict JSON refuses a name twice in an object (security review F3/F14): readers disagree on
which one counts, so a record, result or export line holding one would mean different things to
different consumers. Reading refuses it at any depth; encoding refuses a value that would write
one (a dict subclass whose ``items()`` repeats a key, keys ``1`` and ``"1"``); a stored line that
holds one anyway (a script host that did not refuse it) is printed by ``rqp results`` as an error
line naming the reason, never as the ambiguous line."""

from __future__ import annotations

import json

import pytest

from rqp.jsonsafe import JSONRejected, dumps, loads, result_line


class _Repeats(dict):  # what a script author's result can be
    def items(self):  # type: ignore[override]
        return [("score", 999), ("score", 0)]

    def keys(self):  # type: ignore[override]
        return ["score", "score"]


@pytest.mark.parametrize(
    "text",
    ['{"a":1,"a":2}', '{"x":{"a":1,"a":1}}', '[{"ok":1},{"b":[{"a":1,"a":2}]}]', '{"":1,"":2}'],
)
def test_loads_refuses_a_name_twice_at_any_depth(text):
    with pytest.raises(JSONRejected, match="duplicate name"):
        loads(text)
    assert json.loads(text) is not None  # the plain reader takes it (last wins): the ambiguity


def test_loads_keeps_equal_names_in_different_objects():
    assert loads('{"a":{"a":1},"b":[{"a":2},{"a":3}]}') == {"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}


@pytest.mark.parametrize("value", [_Repeats(score=0), {1: "a", "1": "b"}, {"r": [{True: 1, "true": 2}]}])
def test_dumps_refuses_a_value_that_would_write_a_name_twice(value):
    with pytest.raises(JSONRejected, match="duplicate name"):
        dumps(value)


def test_a_stored_line_with_a_name_twice_prints_as_an_error_line():
    line = b'{"id":3,"result":{"score":999,"score":0}}'
    doc = json.loads(result_line(line))
    assert doc["id"] == 3 and "result" not in doc
    assert doc["error"].startswith('result is not valid JSON: duplicate name "score"'), doc


class _Key(str):  # equal text, distinct dict keys: what a str subclass can make
    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


@pytest.mark.parametrize(
    "value",
    [
        {_Key("a"): 1, _Key("a"): 2},
        {"deep": [[[{2: 1, "2": 2}]]]},
        {"r": ({None: 1, "null": 2},)},
        # past the budget of the quick check: the read-back still finds it
        {"many": list(range(300)), "x": {1.5: 1, "1.5": 2}},
    ],
)
def test_dumps_refuses_a_name_twice_past_the_quick_check(value):
    """``names_distinct`` (the quick check that spares most results a strict read-back) never
    vouches for a value that writes a name twice: a ``str`` subclass key, a non-string key at
    any depth, or a value larger than its budget goes through the read-back."""
    from rqp.sandbox._jsonsafe import names_distinct

    assert not names_distinct(value)
    with pytest.raises(JSONRejected, match="duplicate name"):
        dumps(value)


@pytest.mark.parametrize(
    "value",
    [{"account_hash": "ab12", "amount_cents": 3, "flagged": False}, {"a": [1, {"b": None}], "c": (2.5, "x")}, [{}]],
)
def test_names_distinct_vouches_for_plain_values(value):
    from rqp.sandbox._jsonsafe import names_distinct

    assert names_distinct(value)
    assert loads(dumps(value)) == json.loads(json.dumps(value))


def test_two_names_written_alike_through_a_surrogate_escape_are_refused():
    """Distinct Python strings, one JSON text: an astral character and its two lone halves are
    both written ``\\ud83d\\ude00`` (atk11 F5: such a result was counted done, then shown as an
    error row by every reader of the results)."""
    from rqp.jsonsafe import JSONRejected, dumps

    for value in (
        {"\U0001f600": 1, "\ud83d\ude00": 2},
        {"a": [{"\ud83d" + "\ude00": 1, "\U0001f600": 2}]},
    ):
        with pytest.raises(JSONRejected, match="duplicate name"):
            dumps(value)
    assert dumps({"\U0001f600": 1, "b": "\U0001f600"}) == '{"\\ud83d\\ude00":1,"b":"\\ud83d\\ude00"}'
