"""Poisoned data through the real programs: one bad record fails alone, naming its line, and
every other record is done (the readers never raise; issue #23, item 5).

Before: 100,000 nested ``[`` killed the scheduler with a RecursionError, one invalid UTF-8 byte
in a CSV with a UnicodeDecodeError, and a field over 131,072 bytes with ``_csv.Error``."""

from __future__ import annotations

import json

SCRIPT = "def process(r):\n    return r\n"


def _not_json(constant: str) -> None:
    raise AssertionError(f"rqp results printed {constant}, which is not JSON")


def _check(cluster, wid: str, n: int, bad: int, line: int, reason: str) -> None:
    code, out = cluster.schedule(wid)
    assert code == 1, out  # one record failed: non-zero exit, but the scheduler finished
    assert "Traceback" not in out, out
    failures = cluster.failures(wid)
    assert set(failures) == {bad}, failures
    error = failures[bad]["error"]
    assert f"at line {line}:" in error and reason in error, error
    results = cluster.results(wid)
    assert set(results) == set(range(n)) - {bad}
    st = cluster.status(wid)
    assert (st["state"], st["done"], st["failed"], st["total"]) == ("done", n - 1, 1, n)


def test_deeply_nested_json_lines_record_fails_alone(cluster):
    records = [json.dumps({"n": i}).encode() for i in range(30)]
    records[2] = b"[" * 100_000  # record 3, within the format probe's first 20
    cluster.write_data("nested.jsonl", b"\n".join(records) + b"\n")
    cluster.pack("nested", cluster.root / "nested.jsonl", cluster.write_script("s.py", SCRIPT))
    cluster.start_processor(workers=1)
    _check(cluster, "nested", 30, 2, 3, "nested deeper than 512 levels")
    assert cluster.results("nested")[29] == {"n": 29}


def test_invalid_utf8_in_a_csv_row_fails_alone(cluster):
    rows = [b"name,qty"] + [b"item%d,%d" % (i, i) for i in range(20)]
    rows[6] = b"it\xffem,5"  # record 5, on line 7
    data = cluster.write_data("bad.csv", b"\n".join(rows) + b"\n")
    cluster.pack("badutf8", data, cluster.write_script("s.py", SCRIPT), "--format", "csv")
    cluster.start_processor(workers=1)
    _check(cluster, "badutf8", 20, 5, 7, "field 'name' is not valid UTF-8")
    assert cluster.results("badutf8")[6] == {"name": "item6", "qty": "6"}


def test_a_200_kb_csv_field_fails_its_row_alone(cluster):
    rows = [b"name,text"] + [b"r%d,short" % i for i in range(10)]
    rows[4] = b'r3,"' + b"x" * 200_000 + b'"'  # record 3, on line 5
    data = cluster.write_data("big.csv", b"\n".join(rows) + b"\n")
    cluster.pack("bigfield", data, cluster.write_script("s.py", SCRIPT), "--format", "csv")
    cluster.start_processor(workers=1)
    _check(cluster, "bigfield", 10, 3, 5, "RQP_MAX_CSV_FIELD_BYTES")


def test_nan_and_infinity_fail_their_records_and_results_stay_json(cluster):
    lines = b'{"v": 1}\n{"v": NaN}\n{"v": 2}\n{"v": 1e999}\n{"v": -3}\n'
    data = cluster.write_data("nan.jsonl", lines)
    script = "def process(r):\n    return r['v'] if r['v'] != -3 else float('-inf')\n"
    cluster.pack("nan", data, cluster.write_script("s.py", script))
    cluster.start_processor(workers=1)
    code, out = cluster.schedule("nan")
    assert code == 1, out
    strict = cluster.rqp("results", "nan").stdout.decode()
    docs = [json.loads(x, parse_constant=_not_json) for x in strict.splitlines()]
    assert {d["id"]: d["result"] for d in docs} == {0: 1, 2: 2}
    failures = cluster.failures("nan")
    assert failures[1]["error"] == "malformed record at line 2: NaN is not JSON (use null or a string)"
    assert "at line 4: number 1e999 is too large" in failures[3]["error"]
    assert failures[4]["error"].startswith("result is not valid JSON: -Infinity at $"), failures[4]


def test_deeply_nested_record_with_an_id_field_fails_alone(cluster):
    """The same poison in a workload packed with --id-field (the scheduler reads each record's id)."""
    records = [json.dumps({"id": f"tx-{i}", "n": i}).encode() for i in range(30)]
    records[24] = b'{"id": ' + b"[" * 100_000  # past the format probe: read by the id reader
    cluster.write_data("keyed.jsonl", b"\n".join(records) + b"\n")
    cluster.pack("keyed-poison", cluster.root / "keyed.jsonl", cluster.write_script("s.py", SCRIPT), "--id-field", "id")
    cluster.start_processor(workers=1)
    code, out = cluster.schedule("keyed-poison")
    assert code == 1 and "Traceback" not in out, out
    st = cluster.status("keyed-poison")
    assert (st["state"], st["done"], st["failed"]) == ("done", 29, 1)
