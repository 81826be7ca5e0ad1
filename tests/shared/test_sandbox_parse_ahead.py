"""The script runner parses a group of records before ``process()`` runs on them (issue 28).

Parsed one at a time between two calls of a script that runs a millisecond, each strict parse met
caches the machine's other processes had emptied and cost ~3x its time in a loop. These tests pin
the grouping (so it cannot quietly go back to one record at a time) and what must not change with
it: outcomes in order, malformed records failing alone, the "record in hand" page naming the record
being parsed or processed, and a group bounded by bytes whatever the chunk's size. The last test
runs a real confined script host over the same path.
"""

from __future__ import annotations

import json
import types
from typing import Any

import pytest

from rqp.sandbox import MALFORMED, OK, RAISED, SandboxConfig, ScriptPool, _runner


def _script(process: Any) -> _runner.LoadedScript:
    module = types.ModuleType("parse_ahead_script")
    module.process = process  # type: ignore[attr-defined]
    return _runner.LoadedScript(module, "w-ahead")


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The in-hand value at each strict parse the runner makes (the real parser still parses)."""
    seen: list[int] = []
    real = _runner.J.loads

    def counting(data: bytes | str, *args: Any) -> Any:
        seen.append(-1)
        return real(data, *args)

    monkeypatch.setattr(_runner.J, "loads", counting)
    return seen


def _page() -> memoryview:
    return memoryview(bytearray(4)).cast("I")


def test_records_are_parsed_a_group_ahead_of_process(parses: list[int]) -> None:
    n = 100
    parsed_at_first_call: list[int] = []

    def process(record: Any) -> Any:
        if not parsed_at_first_call:
            parsed_at_first_call.append(len(parses))
        return record

    out: list[tuple[int, bytes]] = []
    _script(process).run([json.dumps(i).encode() for i in range(n)], lambda k, v: out.append((k, v)))
    assert parsed_at_first_call == [_runner.PARSE_AHEAD_RECORDS]  # one at a time: 1
    assert len(parses) == n  # each record parsed once
    assert out == [(OK, str(i).encode()) for i in range(n)]


def test_a_group_is_bounded_by_bytes(parses: list[int]) -> None:
    big = json.dumps("x" * (100 << 10)).encode()  # ~100 KB: three pass PARSE_AHEAD_BYTES (256 KB)
    page = _page()
    parsed_at_first_call: list[int] = []
    seen_in_hand: list[int] = []

    def process(record: Any) -> Any:
        if not parsed_at_first_call:
            parsed_at_first_call.append(len(parses))
        seen_in_hand.append(page[0])
        return len(record)

    out: list[tuple[int, bytes]] = []
    _script(process).run([big] * 10, lambda k, v: out.append((k, v)), page)
    assert parsed_at_first_call == [3]  # 100 + 100 + 100 KB >= 256 KB: the group stops there
    assert out == [(OK, str(100 << 10).encode())] * 10
    assert seen_in_hand == list(range(1, 11))  # the page names the record being processed
    assert page[0] == 0  # and nothing once the batch is done


def test_malformed_records_fail_alone_and_in_order() -> None:
    payloads = [b"1", b"{not json", b"2", b'{"a": 1, "a": 2}', b"3"]

    def process(record: Any) -> Any:
        if record == 2:
            raise ValueError("two")
        return record

    out: list[tuple[int, bytes]] = []
    _script(process).run(payloads, lambda k, v: out.append((k, v)))
    kinds = [k for k, _ in out]
    assert kinds == [OK, MALFORMED, RAISED, MALFORMED, OK]
    assert out[1][1].startswith(b"malformed record: not valid JSON")
    assert b"a" in out[3][1]  # the duplicate name, refused by the strict parser as before
    assert out[0] == (OK, b"1") and out[4] == (OK, b"3")


def test_the_page_names_the_record_being_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A parse that takes the host down must fail its own record, not the one processed before."""
    page = _page()
    at_parse: list[int] = []
    real = _runner.J.loads

    def watching(data: bytes | str, *args: Any) -> Any:
        at_parse.append(page[0])
        return real(data, *args)

    monkeypatch.setattr(_runner.J, "loads", watching)
    n = _runner.PARSE_AHEAD_RECORDS + 5
    _script(lambda r: r).run([b"0"] * n, lambda k, v: None, page)
    assert at_parse == list(range(1, n + 1))


def test_a_confined_host_runs_groups_with_the_same_outcomes() -> None:
    n = _runner.PARSE_AHEAD_RECORDS * 2 + 3
    src = "def process(r):\n    if r % 7 == 3:\n        raise ValueError('seven')\n    return r * 2\n"
    records = [json.dumps(i).encode() for i in range(n)]
    records[10] = b"{not json"
    pool = ScriptPool(SandboxConfig(record_timeout=5, memory_mb=512))
    try:
        got = pool.run("w-ahead", src.encode, records)
    finally:
        pool.close()
    for i, (kind, value) in enumerate(got):
        if i == 10:
            assert kind == MALFORMED
        elif i % 7 == 3:
            assert kind == RAISED
        else:
            assert (kind, value) == (OK, str(i * 2).encode())
