"""The pieces of ``rqp verify`` that need no cluster: a proof (built here over 1,000,000 synthetic
leaves) checks with ``check_proof`` and with the README's plain-Python check, and fails when its
value, path or signer changed; an export read back from CSV or Parquet digests as its JSON Lines
does, whatever types the CSV lost, while a changed cell does not."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from rqp.cli.csv_results import write_csv_results
from rqp.cli.verify import csv_rows
from rqp.errors import IntegrityError
from rqp.merkle import HASH_SIZE, audit_path, iter_hashes, leaf_hash, tree_root
from rqp.results_root import RESULT, Attestation, canonical, leaf_bytes, row_leaf
from rqp.verification import check_proof, proof_doc

README = Path(__file__).resolve().parents[2] / "README.md"
N = 1_000_000


def _readme_check() -> Any:
    """The README's ~30-line proof check, run as written."""
    text = README.read_text()
    block = re.search(r"```python\n(import base64, hashlib, json\n.*?)```", text, re.S)
    assert block, "the README's proof check is missing"
    assert len(block.group(1).splitlines()) <= 35
    space: dict[str, Any] = {}
    exec(block.group(1), space)  # the README's own code, under test
    return space["check"]


@pytest.fixture(scope="module")
def million(operator_key: Any) -> tuple[dict[str, Any], bytes]:
    """A signed proof of record 654,321 of a 1,000,000-record tree (other leaves synthetic)."""
    rid, value, mac = 654_321, {"amount": 12.5, "ok": True}, hashlib.sha256(b"input").digest()
    own = leaf_hash(leaf_bytes(rid, "TX-1", mac, RESULT, hashlib.sha256(canonical(value)).hexdigest()))
    raw = bytearray(b"".join(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(N)))
    raw[rid * HASH_SIZE : (rid + 1) * HASH_SIZE] = own
    root, size = tree_root(iter_hashes([bytes(raw)]))
    statement = {"v": 1, "workload": "w-million", "round": 1, "root": root.hex(), "size": size, "manifest": "m", "data_sha256": "d", "script_sha256": "s"}  # fmt: skip
    unsigned = Attestation(statement, None, "")
    att = Attestation(statement, operator_key.signature(unsigned.message()), operator_key.public_pem().decode())
    leaf, path = audit_path(iter_hashes([bytes(raw)]), rid, size)
    record = {"id": rid, "key": "TX-1", "kind": RESULT, "value": value, "input": mac.hex()}
    return proof_doc(att, record, leaf, path), operator_key.public_pem()


@pytest.fixture(scope="module")
def operator_key(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from rqp.signing import LocalSigningKey, generate_signing_key

    d = tmp_path_factory.mktemp("results-key")
    generate_signing_key(d / "results.pem")
    return LocalSigningKey(d / "results.pem")


def test_a_million_record_proof_is_small_and_checks_in_milliseconds(million):
    doc, pem = million
    size = len(json.dumps(doc, separators=(",", ":")).encode())
    t0 = time.perf_counter()
    assert check_proof(doc, pem).startswith("sha256:")
    took = time.perf_counter() - t0
    readme = _readme_check()
    t1 = time.perf_counter()
    assert readme(doc, pem, "w-million", 654_321) is True
    took_readme = time.perf_counter() - t1
    # the whole proof (public key and signature included), and the check (signature included)
    assert size < 2048, size
    assert took < 0.05 and took_readme < 0.05, (took, took_readme)
    print(
        f"proof of 1 of {N:,} records: {size} bytes ({len(doc['path']) * 3 // 4 // 32} hashes); checked in {took * 1000:.2f} ms"
    )


def test_a_changed_value_path_or_signer_fails_the_proof(million, tmp_path):
    doc, pem = million
    readme = _readme_check()
    changed = json.loads(json.dumps(doc))
    changed["record"]["value"]["amount"] = 12.6
    with pytest.raises(IntegrityError, match="record 654321 of the proof does not hash to its leaf"):
        check_proof(changed, pem)
    assert readme(changed, pem, "w-million", 654_321) is False
    moved = json.loads(json.dumps(doc))
    moved["path"] = moved["path"][:40] + ("A" if moved["path"][40] != "A" else "B") + moved["path"][41:]
    with pytest.raises(IntegrityError, match="path does not lead to the signed root"):
        check_proof(moved, pem)
    assert readme(moved, pem, "w-million", 654_321) is False
    from rqp.signing import generate_signing_key

    generate_signing_key(tmp_path / "other.pem")
    other = (tmp_path / "other.pub.pem").read_bytes()
    with pytest.raises(IntegrityError, match="not by the trusted key sha256:"):
        check_proof(doc, other)
    assert readme(doc, other, "w-million", 654_321) is False
    replayed = json.loads(json.dumps(doc))
    replayed["statement"]["workload"] = "w-other"
    replayed["workload"] = "w-other"
    with pytest.raises(IntegrityError, match="differs from what sha256:"):
        check_proof(replayed, pem)
    assert readme(replayed, pem, "w-million", 654_321) is False


RESULTS = [
    {"id": 0, "result": {"code": "12", "n": 12, "note": None}},
    {"id": 1, "result": {"code": "x", "n": 1.5, "note": ""}},
    {"id": 2, "result": {"code": "007", "n": -3}},
    {"id": 3, "result": [1, {"a": "b"}]},
    {"id": 4, "result": "just text"},
    {"id": 5, "error": "result is not valid JSON: bad"},
]


def _csv(results: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    lines = [json.dumps(r, separators=(",", ":")).encode() for r in results]
    write_csv_results(csv.writer(buf), lambda: lines, keyed=False)
    return buf.getvalue()


def test_a_csv_export_digests_as_its_results_and_a_changed_cell_does_not():
    flat = [r for r in RESULTS if isinstance(r.get("result"), dict)]
    for results in (flat, RESULTS):  # spread into columns, and in a result column
        rows = list(csv_rows(io.StringIO(_csv(results))))
        assert [r.id for r in rows] == [r["id"] for r in results]
        for row, doc in zip(rows, results, strict=True):
            assert row_leaf(doc) in row.candidates, (doc, row)
    text = _csv(flat).replace("007", "008")
    changed = list(csv_rows(io.StringIO(text)))
    assert row_leaf(flat[2]) not in changed[2].candidates
    assert row_leaf(flat[0]) in changed[0].candidates


def test_a_parquet_export_digests_as_its_results(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    import rqp.client._frames as frames
    from rqp.cli.verify import parquet_rows
    from rqp.client._frames import to_parquet

    flat = [r for r in RESULTS if isinstance(r.get("result"), dict)]
    # an error only after the first row (and, in batches of 2, only in the last batch); a field
    # only later rows have; an integer column that later holds a fraction
    later = [
        {"id": 0, "result": {"code": "a", "n": 1}},
        {"id": 1, "result": {"code": "b", "n": 2}},
        {"id": 2, "result": {"code": "c", "n": 2.5, "extra": True}},
        {"id": 3, "error": "result is not valid JSON: NaN"},
    ]
    two_types = [{"id": 0, "result": {"a": 1}}, {"id": 1, "result": {"a": "x"}}]  # one JSON column
    for batch_rows in (8192, 2):
        monkeypatch.setattr(frames, "BATCH_ROWS", batch_rows)
        for results in (flat, RESULTS, two_types, later):
            path = tmp_path / "r.parquet"
            to_parquet(lambda results=results: iter(results), path)
            rows = list(parquet_rows(path))
            assert [r.id for r in rows] == [r["id"] for r in results]
            for row, doc in zip(rows, results, strict=True):
                assert row_leaf(doc) in row.candidates, (batch_rows, doc, row)
    # the error row's reason is compared, so a changed reason is named
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert "error" in table.column_names and "extra" in table.column_names
    errors = table.column("error").to_pylist()
    errors[3] = "result is not valid JSON: Infinity"
    pq.write_table(table.set_column(table.column_names.index("error"), "error", [errors]), path)
    changed = list(parquet_rows(path))
    assert row_leaf(later[3]) not in changed[3].candidates
    assert row_leaf(later[2]) in changed[2].candidates


@pytest.mark.parametrize("key", [None, "TX-1", 'é"\\\n', "12"])
def test_leaf_bytes_are_the_json_the_readme_hashes(key):
    mac = bytes(range(32))
    doc = [7, key, mac.hex(), RESULT, "ab" * 32]
    assert leaf_bytes(7, key, mac, RESULT, "ab" * 32) == b"rqp-leaf/1" + json.dumps(doc, separators=(",", ":")).encode()
