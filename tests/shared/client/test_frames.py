"""DataFrames, Arrow tables and Parquet both ways: rows in as records (with the documented
types), results out as columns when they are flat objects."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from rqp.workload import Workload as Opened  # noqa: E402

SCRIPT = "def process(r):\n    return {'name': r['name'], 'twice': r['n'] * 2}\n"


def _data(world, wid):
    opened = Opened.open(world.store, world.keys, wid, world.trust())
    return [json.loads(line) for line in b"".join(opened.data_chunks()).splitlines() if line]


def test_a_dataframe_goes_in_as_records_with_the_documented_types(client, world):
    frame = pd.DataFrame(
        {
            "n": [1, 2],
            "x": [0.5, float("nan")],
            "name": ["a", None],
            "at": pd.to_datetime(["2026-01-02T03:04:05", None]),
            "ok": [True, False],
        },
        index=[10, 11],
    )
    w = client.submit(frame, SCRIPT, id="frame")
    assert _data(world, w.id) == [
        {"n": 1, "x": 0.5, "name": "a", "at": "2026-01-02T03:04:05", "ok": True},
        {"n": 2, "x": None, "name": None, "at": None, "ok": False},
    ]


def test_a_table_and_a_parquet_file_go_in_as_records(client, world, tmp_path):
    table = pa.table(
        {
            "n": [1, 2],
            "name": ["a", "b"],
            "d": [dt.date(2026, 1, 2), None],
            "price": pa.array([decimal.Decimal("1.10"), None], pa.decimal128(5, 2)),
            "tags": [["x"], []],
            "blob": [b"\x00\x01", None],
        }
    )
    expected = [
        {"n": 1, "name": "a", "d": "2026-01-02", "price": "1.10", "tags": ["x"], "blob": "AAE="},
        {"n": 2, "name": "b", "d": None, "price": None, "tags": [], "blob": None},
    ]
    assert _data(world, client.submit(table, SCRIPT, id="table").id) == expected
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path, row_group_size=1)
    w = client.submit(path, SCRIPT)
    assert w.id.startswith("rows-")
    assert _data(world, w.id) == expected
    assert Opened.open(world.store, world.keys, w.id, world.trust()).manifest.format == "jsonl"


def test_results_come_out_as_a_dataframe_and_parquet(client, run_to_end, tmp_path):
    frame = pd.DataFrame({"n": [1, 2, 3], "name": ["a", "b", "c"]})
    w = client.submit(frame, SCRIPT, id="out")
    run_to_end(w.id)
    out = w.to_pandas()
    assert list(out.columns) == ["id", "name", "twice"]
    assert out.to_dict("records") == [
        {"id": 0, "name": "a", "twice": 2},
        {"id": 1, "name": "b", "twice": 4},
        {"id": 2, "name": "c", "twice": 6},
    ]
    path = w.to_parquet(tmp_path / "out.parquet")
    assert pq.read_table(path).to_pylist() == out.to_dict("records")
    assert list(w.failures_to_pandas().columns) == ["id", "key", "attempts", "error"]


def test_results_that_are_not_flat_stay_one_column(client, run_to_end, tmp_path):
    w = client.submit([{"n": 1}, {"n": 2}], "def process(r):\n    return [r['n']] * r['n']\n", id="nested")
    run_to_end(w.id)
    assert w.to_pandas().to_dict("records") == [{"id": 0, "result": [1]}, {"id": 1, "result": [2, 2]}]
    rows = pq.read_table(w.to_parquet(tmp_path / "n.parquet")).to_pylist()
    assert rows == [{"id": 0, "result": "[1]"}, {"id": 1, "result": "[2, 2]"}]


def test_failures_as_a_dataframe(client, run_to_end):
    w = client.submit([{"n": 1}, {"k": 2}], "def process(r):\n    return r['n']\n", id="fails")
    run_to_end(w.id)
    failed = w.failures_to_pandas()
    assert failed["id"].tolist() == [1]
    assert "KeyError" in failed["error"][0]
