"""#29 finding A5: ``rqp pack`` of a Parquet file whose struct column names a field twice ended in
a traceback ("Converting to Python dictionary is not supported when duplicate field names are
present"); only top-level repeats were refused. Now a struct naming a field twice anywhere in a
column -- the column itself, a list's items, a map's keys or values, a struct in a struct -- is
refused before anything is packed, in one line naming the column, the place and the fix."""

from __future__ import annotations

import pytest

from rqp.cli import main
from rqp.client._sources import data_source
from rqp.errors import WorkloadError
from rqp.workload import blob_name

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SCRIPT = "def process(r):\n    return r['n']\n"
TWICE = pa.struct([("x", pa.string()), ("x", pa.string())])
ROWS = 3


def _twice(n: int):
    """``n`` structs naming the field ``x`` twice, with values (as the reviewer's file had)."""
    return pa.StructArray.from_arrays(
        [pa.array([f"a{i}" for i in range(n)]), pa.array([f"b{i}" for i in range(n)])], names=["x", "x"]
    )


def _pairs():
    return pa.array(list(range(0, 2 * ROWS + 1, 2)), pa.int32())  # two items per row


def _deep():
    inner = pa.ListArray.from_arrays(pa.array(list(range(4 * ROWS + 1)), pa.int32()), _twice(4 * ROWS))
    b = pa.StructArray.from_arrays([inner], names=["b"])
    a = pa.ListArray.from_arrays(pa.array(list(range(0, 4 * ROWS + 1, 4)), pa.int32()), b)
    return pa.StructArray.from_arrays([a], names=["a"])


#: column "s" of each case (3 rows, with values), and where the repeated name is said to be
NESTED = {
    "struct": (lambda: _twice(ROWS), ""),
    "list": (lambda: pa.ListArray.from_arrays(_pairs(), _twice(2 * ROWS)), ", in its struct at s[]"),
    "large-list": (
        lambda: pa.LargeListArray.from_arrays(pa.array(list(range(0, 2 * ROWS + 1, 2)), pa.int64()), _twice(2 * ROWS)),
        ", in its struct at s[]",
    ),
    "map-value": (
        lambda: pa.MapArray.from_arrays(_pairs(), pa.array([f"k{i}" for i in range(2 * ROWS)]), _twice(2 * ROWS)),
        ", in its struct at s{value}",
    ),
    "deep": (_deep, ", in its struct at s.a[].b[]"),
}


@pytest.fixture
def env(world, monkeypatch):
    for name, value in {
        "RQP_REDIS_URL": world.settings.redis_url,
        "RQP_BLOB_URL": world.settings.blob_url,
        "RQP_ALLOW_INSECURE_REDIS": "true",
        "RQP_KEK_FILE": str(world.settings.kek_file),
    }.items():
        monkeypatch.setenv(name, value)


def _table(column):
    return pa.table({"n": pa.array(range(ROWS), pa.int64()), "s": column})


@pytest.mark.parametrize("name", NESTED)
def test_a_parquet_struct_naming_a_field_twice_is_refused_in_one_line(name, env, world, tmp_path, capsys):
    column, where = NESTED[name]
    data = tmp_path / f"dup-{name}.parquet"
    pq.write_table(_table(column()), data)
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    wid = f"dups-{name}"
    assert main(["pack", str(data), str(script), "--id", wid]) != 0
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\n" not in err, err
    assert err.endswith(
        f"Parquet file {data} names the field 'x' twice in the column 's'{where} (only one could count); "
        "rename one and submit again"
    ), err
    assert not world.store.exists(blob_name(wid, "manifest.json"))  # nothing packed


def test_an_arrow_table_is_refused_the_same_way_and_distinct_names_pass():
    with pytest.raises(WorkloadError, match=r"the Arrow table names the field 'x' twice in the column 's', in its"):
        data_source(_table(NESTED["list"][0]()), None)
    with pytest.raises(WorkloadError, match=r"twice in the column 's', in its struct at s\{key\}"):  # a map's keys
        data_source(_table(pa.nulls(ROWS, pa.map_(TWICE, pa.int64()))), None)
    fine = [{"x": "a", "y": [{"x": i}]} for i in range(ROWS)]  # x at two levels: no repeat
    rows = b"".join(data_source(_table(pa.array(fine)), None).pieces)
    assert rows.count(b"\n") == ROWS and b'"s":{"x":"a","y":[{"x":2}]}' in rows, rows
