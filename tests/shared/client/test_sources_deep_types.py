"""#29 atk4 B7: ``client.submit()`` of a pyarrow table whose struct column nests 1500 levels deep
ended in RecursionError (the nested-name check recursed once per level), not an rqp error. The
walk now uses a stack and is bounded by rqp's JSON nesting bound: one ``WorkloadError`` line naming
the column, nothing uploaded; a repeated name deep down is still found."""

from __future__ import annotations

import pytest

from rqp.client._sources import data_source
from rqp.errors import WorkloadError
from rqp.jsonsafe import MAX_JSON_DEPTH
from rqp.workload import blob_name

pa = pytest.importorskip("pyarrow")

SCRIPT = "def process(r):\n    return r\n"


def _nested(levels: int, inner=None):
    kind = inner if inner is not None else pa.int64()
    for _ in range(levels):
        kind = pa.struct([pa.field("a", kind)])
    return kind


def _table(kind):
    # pa.nulls, not pa.array([None] * 3): pyarrow builds the latter in memory cubic in the depth
    # (11.7 GB at 1500 levels, which swapped CI's machine); the column is the same three nulls
    return pa.table({"n": [1, 2, 3], "d": pa.nulls(3, type=kind)})


def test_a_1500_deep_struct_is_one_line_naming_the_column(client, world):
    with pytest.raises(WorkloadError) as caught:
        client.submit(_table(_nested(1500)), SCRIPT, id="deeptab")
    said = str(caught.value)
    assert said.startswith(f"the Arrow table's column 'd' nests deeper than {MAX_JSON_DEPTH} levels (at d.a.a"), said
    assert said.endswith("more than a record may; flatten it and submit again") and len(said) < 300, said
    assert not world.store.exists(blob_name("deeptab", "manifest.json"))  # nothing uploaded


def test_a_repeated_name_deep_down_is_still_found_and_the_bound_is_the_records():
    twice = pa.struct([("x", pa.string()), ("x", pa.string())])
    with pytest.raises(WorkloadError, match=r"names the field 'x' twice in the column 'd', in its struct at d\.a\.a"):
        data_source(_table(_nested(300, pa.list_(twice))), None)
    rows = b"".join(data_source(_table(_nested(MAX_JSON_DEPTH - 1)), None).pieces)  # as deep as a record may be
    assert rows.count(b"\n") == 3, rows[:80]
    with pytest.raises(WorkloadError, match=r"nests deeper than 512 levels"):
        data_source(_table(_nested(MAX_JSON_DEPTH + 1)), None)
