"""#29 finding A6: ``rqp verify W --results x.parquet`` compared the Parquet rows with ``==``, so
an export with ``-0.0`` where rqp wrote ``0.0`` verified, while the JSON Lines rule refuses
``-0`` for ``0`` (a Decimal or jsonb reader sees another number). Cells are now compared bit for
bit (``rqp.export_check._exact``): the sign of zero and NaN payloads are told apart, at any depth."""

from __future__ import annotations

import dataclasses
import math
import struct

import pytest

from rqp.cli import main

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

#: record 0's price is 0.0, the others' n/10
PRICES = "def process(r):\n    return {'price': r['n'] / 10, 'name': 'p%d' % r['n']}\n"


@pytest.fixture
def env(world, monkeypatch):
    for name, value in {
        "RQP_REDIS_URL": world.settings.redis_url,
        "RQP_BLOB_URL": world.settings.blob_url,
        "RQP_ALLOW_INSECURE_REDIS": "true",
        "RQP_KEK_FILE": str(world.settings.kek_file),
    }.items():
        monkeypatch.setenv(name, value)


def _with_price(table, row: int, value: float):
    prices = table.column("price").to_pylist()
    prices[row] = value
    return table.set_column(table.column_names.index("price"), "price", pa.array(prices, pa.float64()))


def test_a_parquet_export_with_negative_zero_for_zero_does_not_verify(
    env, world, run_to_end, tmp_path, capsys, operator
):
    world.settings = dataclasses.replace(world.settings, operator_key_file=operator.path)  # signs the root
    world.pack("pq-zero", [{"n": i} for i in range(5)], PRICES)
    run_to_end("pq-zero")
    out = tmp_path / "fl.parquet"
    assert main(["results", "pq-zero", "--format", "parquet", "-o", str(out)]) == 0
    table = pq.read_table(out)
    assert table.column("price").to_pylist()[0] == 0.0 and table.schema.field("price").type == pa.float64()
    verify = ["verify", "pq-zero", "--signer", str(operator.trusted), "--results"]
    capsys.readouterr()
    assert main([*verify, str(out)]) == 0
    assert "5 records match" in capsys.readouterr().out

    negative = tmp_path / "fneg0.parquet"
    pq.write_table(_with_price(table, 0, -0.0), negative)
    assert pq.read_table(negative).column("price").to_pylist()[0] == 0.0  # equal as a float: what == saw
    assert main([*verify, str(negative)]) == 4
    err = capsys.readouterr().err
    assert "record 0 differs from what was signed (row 1 of" in err, err

    # the same bits written again (a fresh file of the same cells) still verify
    again = tmp_path / "again.parquet"
    pq.write_table(_with_price(table, 0, 0.0), again)
    assert main([*verify, str(again)]) == 0
    capsys.readouterr()


def test_cells_are_compared_bit_for_bit_at_any_depth():
    from rqp.export_check import _exact

    def nan(payload: int) -> float:
        return float(struct.unpack(">d", struct.pack(">Q", 0x7FF8000000000000 | payload))[0])

    assert math.isnan(nan(1)) and math.isnan(nan(2))
    assert _exact({"a": [0.0, {"b": 1.5}]}) == _exact({"a": [0.0, {"b": 1.5}]})
    assert _exact({"a": [-0.0, {"b": 1.5}]}) != _exact({"a": [0.0, {"b": 1.5}]})  # in a list in a struct
    assert _exact({"a": [0.0, {"b": -0.0}]}) != _exact({"a": [0.0, {"b": 0.0}]})  # a struct in a list
    assert _exact([("k", -0.0)]) != _exact([("k", 0.0)])  # a map's entries
    assert _exact({"x": nan(1)}) == _exact({"x": nan(1)})  # the same NaN is the same cell (== says no)
    assert _exact({"x": nan(1)}) != _exact({"x": nan(2)})  # another payload is not
    assert len({_exact(v) for v in (1, 1.0, True)}) == 3  # types apart
