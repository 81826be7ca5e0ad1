"""The second security review's export findings (N1, N2, N5, N9), run against real programs:

* N1: a Parquet export whose metadata relabels columns for pandas is refused, naming the metadata;
* N2: a JSON Lines export is compared byte for byte with what ``rqp results`` prints, so a number
  written otherwise (``0.10000000000000001``, ``-0``) is not taken for rqp's;
* N5: a record whose ``--id-field`` key holds a lone surrogate fails alone at enqueue, and the
  exporters escape such text instead of failing the whole workload's CSV/Parquet;
* N9: CSV and Parquet input naming a column twice is refused at ``rqp pack`` (and by the
  scheduler's CSV reader), as JSON Lines refuses a name twice."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from harness import Cluster, make_signer

from rqp.cli import main
from rqp.cli.csv_results import write_csv_results
from rqp.client._frames import failures_table, to_pandas, to_parquet
from rqp.records import Limits, LineMap, parse_records, record_key
from rqp.summary import Failure

FLOATS = "def process(r):\n    n = r['n']\n    return {'price': n / 10, 'big': 1e22, 'name': 'p%d' % n, 'zero': 0}\n"
SCORE = "def process(r):\n    return {'score': r['n'] * 10}\n"
N = 20
SURROGATE_KEY = "Al\udce9x"


@pytest.fixture(scope="module")
def cluster(redis_server, kek, tmp_path_factory) -> Iterator[tuple[Cluster, Path]]:
    """Two finished workloads signed by the scheduler's results key: ``fl`` (floats, a 1e22, a
    zero, as the review's ``fl``) and ``skey`` (keyed by ``uid``; record 5's key holds a lone
    surrogate, as the review's ``skey``)."""
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    r.close()
    root = tmp_path_factory.mktemp("verify-exports-atk2")
    c = Cluster(root / "cluster", redis_server.url, kek[0])
    key, pub = make_signer(root / "results-key", "results")
    c.pack("fl", c.write_data("fl.jsonl", [{"n": i} for i in range(N)]), c.write_script("fl.py", FLOATS))
    skey = [{"n": i, "uid": SURROGATE_KEY if i == 5 else f"k{i}"} for i in range(N)]
    data = c.write_data("skey.jsonl", b"".join(json.dumps(d).encode() + b"\n" for d in skey))
    c.pack("skey", data, c.write_script("sc.py", SCORE), "--id-field", "uid")
    c.start_processor(2)
    try:
        code, out = c.schedule("fl", "skey", env={"RQP_RESULTS_KEY_FILE": str(key), "RQP_CHUNK_SIZE": "7"})
        assert code == 1, out  # skey's record 5 failed at enqueue
        yield c, pub
    finally:
        c.stop()


@pytest.fixture
def verify(cluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``rqp verify W --results FILE --signer PUB`` in this process: (exit code, its one line)."""
    c, pub = cluster
    for k, v in c.env.items():
        if k.startswith("RQP_"):
            monkeypatch.setenv(k, v)

    def run(wid: str, path: Path) -> tuple[int, str]:
        code = main(["verify", wid, "--signer", str(pub), "--results", str(path)])
        got = capsys.readouterr()
        out = (got.out + got.err).strip()
        assert "\n" not in out and "Traceback" not in out, out
        return code, out

    return run


def _export(c: Cluster, wid: str, path: Path, *fmt: str) -> Path:
    c.rqp("results", wid, *fmt, "-o", str(path))
    return path


# ------------------------------------------------------------------ N1: Parquet metadata
def test_parquet_metadata_relabelling_columns_is_refused(cluster, verify, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    c, _ = cluster
    path = _export(c, "fl", tmp_path / "fl.parquet", "--format", "parquet")
    assert verify("fl", path)[0] == 0
    table = pq.read_table(path)
    assert table.schema.metadata is None  # rqp's writer writes none: anything found was added
    names = table.column_names
    assert names[:3] == ["id", "price", "big"], names
    pandas_meta = {
        "index_columns": [],
        "column_indexes": [],
        "columns": [
            {"name": "big" if n == "price" else "price" if n == "big" else n, "field_name": n,
             "pandas_type": "float64", "numpy_type": "float64", "metadata": None}
            for n in names
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.0.0",
    }  # fmt: skip
    forged = tmp_path / "fPM2.parquet"
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}), forged)
    code, out = verify("fl", forged)
    assert code == 4 and "metadata" in out and "'pandas'" in out, out

    other = tmp_path / "kv.parquet"
    pq.write_table(table.replace_schema_metadata({b"note": b"hello"}), other)
    code, out = verify("fl", other)
    assert code == 4 and "'note'" in out, out

    fields = [f.with_metadata({b"label": b"big"}) if f.name == "price" else f for f in table.schema]
    relabelled = tmp_path / "field.parquet"
    pq.write_table(table.cast(pa.schema(fields)), relabelled)
    code, out = verify("fl", relabelled)
    assert code == 4 and "column 'price'" in out and "metadata" in out, out


# ------------------------------------------------------------------ N2: JSON Lines as written
def test_jsonl_numbers_are_compared_as_written(cluster, verify, tmp_path):
    c, _ = cluster
    path = _export(c, "fl", tmp_path / "fl.jsonl")
    assert verify("fl", path)[0] == 0
    lines = path.read_bytes().split(b"\n")
    assert lines[1] == b'{"id":1,"result":{"price":0.1,"big":1e+22,"name":"p1","zero":0}}', lines[1]
    for name, forged in {
        "fprec.jsonl": b'{"id":1,"result":{"price":0.10000000000000001,"big":10000000000000000000001.0,"name":"p1","zero":0}}',
        "fneg.jsonl": b'{"id":1,"result":{"price":0.1,"big":1e+22,"name":"p1","zero":-0}}',
        "fexp.jsonl": b'{"id":1,"result":{"price":1e-1,"big":1e+22,"name":"p1","zero":0}}',
    }.items():  # fmt: skip
        assert json.loads(forged) == json.loads(lines[1])  # equal once parsed: only the text differs
        p = tmp_path / name
        p.write_bytes(b"\n".join([lines[0], forged, *lines[2:]]))
        code, out = verify("fl", p)
        assert code == 4 and "record 1 differs" in out and "line 2 of" in out, (name, out)


# ------------------------------------------------------------------ N5: a key with a lone surrogate
def test_a_key_with_a_lone_surrogate_fails_its_record_and_every_export_works(cluster, verify, tmp_path):
    c, _ = cluster
    failures = c.failures("skey")
    assert list(failures) == [5], failures
    assert failures[5]["error"] == (
        "malformed record at line 6: its id in field 'uid' is not Unicode text (it holds a lone surrogate "
        "\\udce9); fix the data's 'uid' value"
    )
    for fmt, ext in (("jsonl", "jsonl"), ("csv", "csv"), ("parquet", "parquet")):
        if fmt == "parquet":
            pytest.importorskip("pyarrow")
        path = _export(c, "skey", tmp_path / f"skey.{ext}", "--format", fmt)
        code, out = verify("skey", path)
        assert code == 0 and f"{N - 1} records match" in out, (fmt, out)
    failed = c.rqp("results", "skey", "--failed", "--format", "csv").stdout.decode()
    assert failed.splitlines()[1].startswith("5,,0,malformed record at line 6"), failed


def test_the_exporters_escape_a_lone_surrogate_instead_of_failing(tmp_path):
    """Keys stored before the enqueue check (or any text no UTF-8 form holds) never make a
    writer fail: each writes the surrogate's escape, as the results root does."""
    line = json.dumps({"id": 0, "key": SURROGATE_KEY, "result": {"score": 1}}).encode()
    out = io.StringIO()
    write_csv_results(csv.writer(out), lambda: [line], keyed=True)
    assert out.getvalue().splitlines() == ["id,key,score", "0,Al\\udce9x,1"]
    out.getvalue().encode("utf-8")
    records = [{"id": 0, "key": SURROGATE_KEY, "result": {"score": 1}}]
    pytest.importorskip("pyarrow")
    pytest.importorskip("pandas")
    import pyarrow.parquet as pq

    assert to_pandas(records)["key"].tolist() == ["Al\\udce9x"]
    to_parquet(lambda: records, tmp_path / "r.parquet")
    assert pq.read_table(tmp_path / "r.parquet").column("key").to_pylist() == ["Al\\udce9x"]
    failures_table([Failure(3, "reason \ud800", 1, SURROGATE_KEY)], tmp_path / "f.parquet")
    row = pq.read_table(tmp_path / "f.parquet").to_pylist()[0]
    assert (row["key"], row["error"]) == ("Al\\udce9x", "reason \\ud800")


def test_record_key_refuses_a_lone_surrogate_and_keeps_other_keys():
    key, error = record_key(json.dumps({"uid": "a\ud800"}).encode(), "uid", 0, LineMap())
    assert key is None and error is not None and "lone surrogate \\ud800" in error and "line 1" in error
    assert record_key(json.dumps({"uid": "Åsa 😀"}).encode(), "uid", 0, LineMap()) == ("Åsa 😀", None)


# ------------------------------------------------------------------ N9: a column named twice in input
def test_csv_input_naming_a_column_twice_is_refused_at_pack(cluster, tmp_path):
    c, _ = cluster
    data = tmp_path / "duph.csv"
    data.write_text("n,name,name\n" + "".join(f"{i},a{i},b{i}\n" for i in range(5)))
    p = c.rqp("pack", str(data), str(c.write_script("csvs.py", SCORE)), "--format", "csv", "--id", "duph", check=False)
    err = p.stderr.decode().strip()
    assert p.returncode != 0 and "Traceback" not in err and "\n" not in err, err
    assert "header names the column 'name' twice" in err, err
    # the scheduler's reader refuses it the same way (a client that packed it anyway): every row, one line
    rows = list(parse_records("csv", [data.read_bytes()], limits=Limits()))
    assert len(rows) == 5 and all(payload == b"" for payload, _ in rows), rows
    assert rows[0][1] == (
        "malformed CSV row at line 2: the header (line 1) names the column 'name' twice; rename one "
        "(as JSON Lines refuses a name twice)"
    )


def test_parquet_input_naming_a_column_twice_is_refused_at_pack(cluster, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    c, _ = cluster
    data = tmp_path / "duph.parquet"
    table = pa.Table.from_arrays(
        [pa.array(range(5)), pa.array([f"a{i}" for i in range(5)]), pa.array([f"b{i}" for i in range(5)])],
        names=["n", "name", "name"],
    )
    pq.write_table(table, data)
    script = str(c.write_script("pq.py", SCORE))
    p = c.rqp("pack", str(data), script, "--format", "parquet", "--id", "duphp", check=False)
    err = p.stderr.decode().strip()
    assert p.returncode != 0 and "Traceback" not in err and "\n" not in err, err
    assert "names the column 'name' twice" in err, err
    assert c.rqp("list").stdout.decode().count("duphp") == 0


def test_a_proof_with_a_number_written_otherwise_is_refused(cluster, tmp_path, monkeypatch, capsys):
    c, pub = cluster
    for k, v in c.env.items():
        if k.startswith("RQP_"):
            monkeypatch.setenv(k, v)
    proof = tmp_path / "fp1.json"
    c.rqp("proof", "fl", "--record", "1", "-o", str(proof))
    text = proof.read_text()
    assert '"price":0.1' in text.replace(" ", ""), text
    args = ["verify-proof", "--signer", str(pub), "--workload", "fl", "--record", "1"]
    assert main([*args, str(proof)]) == 0
    capsys.readouterr()
    for name, old, new in (
        ("fprec.json", "0.1", "0.10000000000000001"),
        ("fbig.json", "1e+22", "10000000000000000000001.0"),
        ("fneg.json", '"zero":0', '"zero":-0'),
    ):
        edited = text.replace(old, new, 1)
        assert edited != text and json.loads(edited) == json.loads(text), name  # equal once parsed
        path = tmp_path / name
        path.write_text(edited)
        code = main([*args, str(path)])
        out = capsys.readouterr()
        line = (out.out + out.err).strip()
        assert code != 0 and "writes the number" in line and "\n" not in line, (name, line)


def test_a_dataframe_or_table_naming_a_column_twice_is_refused_by_the_client():
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    from rqp.client._sources import data_source
    from rqp.errors import WorkloadError

    frame = pd.DataFrame([[1, "a", "b"]], columns=["n", "name", "name"])
    with pytest.raises(WorkloadError, match="the DataFrame names the column 'name' twice"):
        data_source(frame, None)
    table = pa.Table.from_arrays([pa.array([1]), pa.array(["a"]), pa.array(["b"])], names=["n", "name", "name"])
    with pytest.raises(WorkloadError, match="the Arrow table names the column 'name' twice"):
        data_source(table, None)
    assert data_source(pd.DataFrame([[1, "a"]], columns=["n", "name"]), None).fmt == "jsonl"
