"""The results root's shortcut for the usual results line (``rqp.results_root._rows_of``) gives
every line the row the public definitions give it (``parse_result_line`` then ``row_leaf``):
a line it takes the shortcut for must be one the strict parser reads the same way, and every
line it cannot vouch for -- a name twice, NaN, a number too large, nesting too deep, spacing,
another order of names, an id JSON would not write -- goes the full way."""

from __future__ import annotations

import pytest

from rqp import results_root
from rqp.results_root import _rows_of, parse_result_line, row_leaf

#: lines the shortcut may take: already canonical JSON after the frame
CANONICAL = [
    b'{"id":0,"result":{"account_hash":"036c95d4d89a","amount_cents":56920,"flagged":false}}',
    b'{"id":1,"result":[1,2.5,-0.0,null,true,"x"]}',
    b'{"id":2,"result":"caf\xc3\xa9 \xf0\x9f\x98\x80"}',
    b'{"id":3,"result":123456789012345678901234567890}',
    b'{"id":4,"result":{"a":{"b":[{}],"c":[]},"d":"\\n\\"\\\\"}}',
    b'{"id":5,"result":' + b"[" * 300 + b"]" * 300 + b"}",
    b'{"id":6,"result":"' + b"x" * 5000 + b'"}',
    b'{"id":7,"result":1e+300}',
]

#: lines it must leave to the full way (each would digest differently, or not at all, if taken)
OTHERS = [
    b'{"id":10,"result":{"a":1,"a":2}}',  # a name twice: refused by the strict parser
    b'{"id":11,"result":{"a":{"x":1,"x":1}}}',
    b'{"id":12,"result":NaN}',
    b'{"id":13,"result":-Infinity}',
    b'{"id":14,"result":1e999}',
    b'{"id":15,"result":' + b"[" * 600 + b"]" * 600 + b"}",  # deeper than MAX_JSON_DEPTH
    b'{"id":16,"result":{"b":1,"a":2}}',  # not canonical: re-encoded
    b'{"id":17,"result":"\\u00e9"}',
    b'{"id":18,"result":1E5}',
    b'{"id":19,"result":"\\ud83d"}',  # a lone surrogate: written as its escape
    b'{"id":21,"result":{"a":1}}}',
    b'{"id":22,"result":1} ',
    b'{"id":23,"result": 1}',
    b'{"id":024,"result":1}',
    b'{"id":-25,"result":1}',
    b'{"id":26,"key":"k","result":1}',
    b'{"id":27,"result":"\xff"}',
    b'{"id":28,"result":"a\tb"}',  # a raw control character: not strict JSON
    b'{"id":29,"result":[1,]}',
    b'{"id":30,"result":}',
    b'{"id":' + b"9" * 5000 + b',"result":1}',  # over Python's digit limit
    b'{"id":32,"result":' + b'"[' * 300 + b"1" + b']"' * 300 + b"}",
    b'{"id":33,"error":"result is not valid JSON"}',
    b"",
    b"not json",
]


def _reference(line: bytes) -> tuple[object, object, str, str]:
    doc = parse_result_line(line)
    kind, digest = row_leaf(doc)
    return doc.get("id"), doc.get("key"), kind, digest


@pytest.mark.parametrize("line", CANONICAL + OTHERS, ids=lambda b: b[:40].decode("utf-8", "replace"))
def test_each_line_gets_the_row_the_definitions_give(line: bytes) -> None:
    assert _rows_of([line]) == [_reference(line)]


def test_the_shortcut_is_taken_for_canonical_lines_only(monkeypatch: pytest.MonkeyPatch) -> None:
    full_way: list[bytes] = []
    real = results_root._row

    def counted(line: bytes) -> tuple[object, object, str, str]:
        full_way.append(line)
        return real(line)

    monkeypatch.setattr(results_root, "_row", counted)
    rows = _rows_of(CANONICAL + OTHERS)
    assert rows == [_reference(line) for line in CANONICAL + OTHERS]
    assert full_way == OTHERS


def test_a_line_with_a_member_rqp_never_writes_is_refused_by_the_shortcut_too() -> None:
    """Ninth review, G3: ``{"id":N,"result":R,"x":...}`` frames like the usual line; the scan of
    ``R`` stops before the end, so it goes the full way, which refuses it."""
    from rqp.errors import IntegrityError

    with pytest.raises(IntegrityError, match="has members rqp never writes"):
        _rows_of([b'{"id":20,"result":1,"x":2}'])
