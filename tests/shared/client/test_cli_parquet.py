"""Parquet both ways on the command line, through the client's reader and writer:
``rqp pack data.parquet`` (rows as records) and ``rqp results W --format parquet``."""

from __future__ import annotations

import pytest

from rqp.cli import main

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SCRIPT = "def process(r):\n    if r['n'] == 2:\n        raise ValueError('two')\n    return {'n': r['n'], 'label': r['label']}\n"


@pytest.fixture
def env(world, monkeypatch):
    for name, value in {
        "RQP_REDIS_URL": world.settings.redis_url,
        "RQP_BLOB_URL": world.settings.blob_url,
        "RQP_ALLOW_INSECURE_REDIS": "true",
        "RQP_KEK_FILE": str(world.settings.kek_file),
    }.items():
        monkeypatch.setenv(name, value)


def test_pack_a_parquet_file_and_read_the_results_as_parquet(env, world, run_to_end, tmp_path, capsys):
    data = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"n": [1, 2, 3], "label": ["a", "b", None]}), data)
    script = tmp_path / "p.py"
    script.write_text(SCRIPT)
    assert main(["pack", str(data), str(script), "--id", "pq"]) == 0
    run_to_end("pq")
    out = tmp_path / "out.parquet"
    assert main(["results", "pq", "--format", "parquet", "-o", str(out)]) == 0
    assert pq.read_table(out).to_pylist() == [{"id": 0, "n": 1, "label": "a"}, {"id": 2, "n": 3, "label": None}]
    failed = tmp_path / "failed.parquet"
    assert main(["results", "pq", "--failed", "--format", "parquet", "-o", str(failed)]) == 0
    [row] = pq.read_table(failed).to_pylist()
    assert (row["id"], row["attempts"]) == (1, 2) and "two" in row["error"]
    capsys.readouterr()


def test_results_as_parquet_need_a_file(env, run_to_end, world, tmp_path, capsys):
    world.pack("nofile", [{"n": 1}])
    run_to_end("nofile")
    assert main(["results", "nofile", "--format", "parquet"]) != 0
    assert "add -o FILE.parquet" in capsys.readouterr().err


#: results whose first rows lack a field later ones have (as an ``error`` is absent until a row has one)
LATER_FIELD = "def process(r):\n    return {'n': r['n']} if r['n'] < 4 else {'n': r['n'], 'label': 'x%d' % r['n']}\n"


def test_a_parquet_export_keeps_columns_only_later_rows_have_and_verifies(
    env, world, run_to_end, tmp_path, capsys, operator
):
    """Issue #29 item 4: the Parquet writer took its columns from the first row, so a column only
    later rows have (a field, or ``error`` for a result that is not JSON) was dropped and
    ``rqp verify --results`` called those records changed. Now the export keeps it and verifies,
    and a changed cell of it is named."""
    import dataclasses

    world.settings = dataclasses.replace(world.settings, operator_key_file=operator.path)  # signs the root
    world.pack("pq-later", [{"n": i} for i in range(6)], LATER_FIELD)
    run_to_end("pq-later")
    out = tmp_path / "out.parquet"
    assert main(["results", "pq-later", "--format", "parquet", "-o", str(out)]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["id", "n", "label"], table.schema
    assert table.column("label").to_pylist() == [None, None, None, None, "x4", "x5"]
    capsys.readouterr()
    code = main(["verify", "pq-later", "--results", str(out), "--signer", str(operator.trusted)])
    assert code == 0 and "6 records match" in capsys.readouterr().out
    labels = table.column("label").to_pylist()
    labels[5] = "x6"
    pq.write_table(table.set_column(table.column_names.index("label"), "label", [labels]), out)
    assert main(["verify", "pq-later", "--results", str(out), "--signer", str(operator.trusted)]) == 4
    assert "record 5 differs from what was signed" in capsys.readouterr().err
