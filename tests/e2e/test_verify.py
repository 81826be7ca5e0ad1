"""Verifiable results through the real programs: a scheduler with its own results key signs each
workload's Merkle root; ``rqp verify`` passes the genuine results and exports and names the record
of every tampering (a byte changed, a record dropped, duplicated, two results swapped), a root
replayed from another workload or signed by an untrusted key fails naming it, and ``rqp proof``'s
output checks with ``rqp verify-proof`` given only the public key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from harness import Cluster, bin_path, make_signer

from rqp.cli import main
from rqp.errors import IntegrityError
from rqp.keys import LocalKeyProvider
from rqp.signing import TrustStore
from rqp.storage import FileBlobStore
from rqp.summary import SUMMARY_BLOB, Summary
from rqp.workload import Workload, blob_name

SCRIPT = (
    "import rqp\n\n"
    "def process(r):\n"
    "    if r['n'] == 5:\n        raise rqp.PermanentError('five is not allowed')\n"
    "    return {'n': r['n'], 'square': r['n'] * r['n'], 'label': 'x%d' % r['n']}\n"
)
N = 30
PARSED = (
    "def parse(stream):\n    for part in stream.read().decode().split(';'):\n"
    "        k, v = part.split('=')\n        yield {'k': k, 'v': int(v)}\n\n"
    "def process(r):\n    return r['k'] * r['v']\n"
)


@pytest.fixture(scope="module")
def signed(redis_server, kek, tmp_path_factory) -> Iterator[tuple[Cluster, Path, Path, list[str]]]:
    """Two finished workloads whose roots the scheduler signed with its results key, shared by the
    module's tests (one scheduler run; the test that alters a summary runs last)."""
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    r.close()
    root = tmp_path_factory.mktemp("verify")
    c = Cluster(root / "cluster", redis_server.url, kek[0])
    key, pub = make_signer(root / "results-key", "results")
    script = c.write_script("v.py", SCRIPT)
    wids = []
    for wid in ("verify-a", "verify-b"):
        data = c.write_data(f"{wid}.jsonl", [{"n": i} for i in range(N)])
        wids.append(c.pack(wid, data, script))
    keyed = c.write_data("k.jsonl", [{"customer": f"C-{i:02d}", "n": i} for i in range(6)])
    wids.append(c.pack("verify-k", keyed, script, "--id-field", "customer"))
    parsed = c.write_script("parsed.py", PARSED)
    wids.append(c.pack("verify-s", c.write_data("s.txt", b"a=1;b=2;c=3"), parsed, "--format", "script"))
    c.start_processor(2)
    try:
        code, out = c.schedule(*wids, env={"RQP_RESULTS_KEY_FILE": str(key), "RQP_CHUNK_SIZE": "7"})
        assert code == 1, out  # record 5 failed
        yield c, key, pub, wids
    finally:
        c.stop()


@pytest.fixture
def rqp_cli(signed, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``rqp ARGS`` run in this process -- the same parser, commands and exit map as the
    installed program, without a Python start per call -- configured as the cluster's programs
    are; (exit code, stdout + stderr)."""
    for k, v in signed[0].env.items():
        if k.startswith("RQP_"):
            monkeypatch.setenv(k, v)

    def run(*args: str) -> tuple[int, str]:
        code = main(list(args))
        got = capsys.readouterr()
        return code, got.out + got.err

    return run


def _export(c: Cluster, wid: str, path: Path, *fmt: str) -> list[str]:
    c.rqp("results", wid, *fmt, "-o", str(path))
    return path.read_text().splitlines()


def test_genuine_results_and_exports_verify_and_tampering_names_the_record(signed, rqp_cli, tmp_path):
    c, _key, pub, (wid, *_) = signed
    cp = c.rqp("verify", wid, "--signer", str(pub), check=False)  # the installed program, once
    assert cp.returncode == 0 and f"{N - 1} records match" in cp.stdout.decode(), cp

    def verify(_c: Cluster, pub: Path, *args: str) -> tuple[int, str]:
        return rqp_cli("verify", *args, "--signer", str(pub))

    code, out = verify(c, pub, wid)
    assert code == 0 and f"{N - 1} records match" in out, out
    lines = _export(c, wid, tmp_path / "r.jsonl")
    code, out = verify(c, pub, wid, "--results", str(tmp_path / "r.jsonl"))
    assert code == 0, out

    (tmp_path / "reversed.jsonl").write_text("\n".join(lines[::-1]) + "\n")  # any order: sorted to check
    code, out = verify(c, pub, wid, "--results", str(tmp_path / "reversed.jsonl"))
    assert code == 0, out

    def check(name: str, rows: list[str], expect: str) -> None:
        path = tmp_path / name
        path.write_text("\n".join(rows) + "\n")
        code, out = verify(c, pub, wid, "--results", str(path))
        assert code == 4 and expect in out, (name, out)
        print(f"rqp verify {wid} --results {name}: exit {code}: {out.strip()}", file=sys.__stdout__)

    # one byte of one result changed
    changed = list(lines)
    changed[9] = changed[9].replace('"square":100', '"square":101')
    assert changed[9] != lines[9]
    check("byte.jsonl", changed, "record 10 differs from what was signed")
    # a record dropped (record 5 failed, so line 12 is record 13)
    check("drop.jsonl", lines[:12] + lines[13:], "record 13 is missing")
    check("dup.jsonl", [*lines[:13], lines[12], *lines[13:]], "record 13 appears twice")
    extra = json.loads(lines[-1]) | {"id": N + 3}
    check("extra.jsonl", [*lines, json.dumps(extra)], f"record {N + 3} is extra")
    # two records' results swapped (ids kept)
    a, b = json.loads(lines[1]), json.loads(lines[2])
    a["result"], b["result"] = b["result"], a["result"]
    check("swap.jsonl", [lines[0], json.dumps(a), json.dumps(b), *lines[3:]], "record 1 differs")
    # CSV: the genuine export verifies, a changed cell names its record
    rows = _export(c, wid, tmp_path / "r.csv", "--format", "csv")
    code, out = verify(c, pub, wid, "--results", str(tmp_path / "r.csv"))
    assert code == 0, out
    rows[4] = rows[4].replace("x3", "x4")
    check("cell.csv", rows, "record 3 differs")


def test_a_proof_checks_with_only_the_public_key(signed, rqp_cli, tmp_path):
    _c, _key, pub, (wid, *_) = signed
    proof = tmp_path / "p.json"
    assert rqp_cli("proof", wid, "--record", "7", "-o", str(proof))[0] == 0
    doc = json.loads(proof.read_text())
    assert doc["record"]["value"] == {"n": 7, "square": 49, "label": "x7"}
    assert len(proof.read_bytes()) < 2048
    # checked with no KEK, no Redis, no blob store: only the proof and the public key
    bare = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}  # no RQP_ setting: no KEK, Redis or store
    cp = subprocess.run([bin_path("rqp"), "verify-proof", str(proof), "--signer", str(pub)], env=bare, capture_output=True, check=False)  # fmt: skip
    assert b"record 7 of workload verify-a (result) is in the round 1 root" in cp.stdout, cp
    failed = tmp_path / "f.json"
    assert rqp_cli("proof", wid, "--record", "5", "-o", str(failed))[0] == 0
    assert json.loads(failed.read_text())["record"]["kind"] == "failed"
    assert rqp_cli("verify-proof", str(failed), "--signer", str(pub))[0] == 0
    doc["record"]["value"]["square"] = 50
    proof.write_text(json.dumps(doc))
    code, out = rqp_cli("verify-proof", str(proof), "--signer", str(pub))
    assert code == 4 and "record 7 of the proof does not hash to its leaf" in out
    _, stranger = make_signer(tmp_path / "stranger", "stranger")
    code, out = rqp_cli("verify-proof", str(failed), "--signer", str(stranger))
    assert code == 4 and "not by the trusted key" in out


def test_a_script_parsed_workloads_inputs_are_digested_too(signed, rqp_cli, tmp_path):
    _c, _key, pub, (*_, wid) = signed
    assert wid == "verify-s"
    code, out = rqp_cli("verify", wid, "--signer", str(pub))
    assert code == 0 and "3 records match" in out, out
    proof = tmp_path / "s.json"
    assert rqp_cli("proof", wid, "--record", "1", "-o", str(proof))[0] == 0
    rec = json.loads(proof.read_text())["record"]
    assert rec["value"] == "bb" and len(rec["input"]) == 64  # its parse() ran again for the digest
    assert rqp_cli("verify-proof", str(proof), "--signer", str(pub))[0] == 0


def test_a_keyed_workloads_leaves_carry_the_key_and_a_proof_is_found_by_it(signed, rqp_cli, tmp_path):
    _c, _key, pub, (_a, _b, wid, _s) = signed
    code, out = rqp_cli("verify", wid, "--signer", str(pub))
    assert code == 0 and "5 records match" in out, out  # record 5 failed
    proof = tmp_path / "k.json"
    assert rqp_cli("proof", wid, "--key", "C-03", "-o", str(proof))[0] == 0
    doc = json.loads(proof.read_text())
    assert (doc["record"]["id"], doc["record"]["key"]) == (3, "C-03")
    assert rqp_cli("verify-proof", str(proof), "--signer", str(pub))[0] == 0
    doc["record"]["key"] = "C-04"  # the same result claimed for another customer
    proof.write_text(json.dumps(doc))
    code, out = rqp_cli("verify-proof", str(proof), "--signer", str(pub))
    assert code == 4 and "record 3 of the proof does not hash to its leaf" in out


def test_altered_leaf_hashes_or_input_digests_are_named(signed, rqp_cli):
    c, _key, pub, (wid, *_) = signed
    d = c.root / "blobs" / "workloads" / wid
    for name, expect in (("leaves.bin", "do not fold into the signed root"), ("inputs.bin", "record 2 differs")):
        original = (d / name).read_bytes()
        altered = bytearray(original)
        altered[2 * 32] ^= 1  # record 2's
        (d / name).write_bytes(bytes(altered))
        try:
            code, out = rqp_cli("verify", wid, "--signer", str(pub))
        finally:
            (d / name).write_bytes(original)
        assert code == 4 and expect in out, (name, out)


def test_the_python_api_returns_the_root_verifies_and_proves(signed, kek):
    c, _key, pub, (wid, *_) = signed
    import rqp
    from rqp.verification import check_proof

    with rqp.Client(
        redis_url=c.redis_url, blob_url=c.env["RQP_BLOB_URL"], kek_file=str(kek[0]), allow_insecure_redis=True,
        trusted_signers_file=str(c.trusted_signers), trusted_results_keys_file=str(pub),
    ) as client:  # fmt: skip
        w = client.workload(wid)
        root = w.root()
        assert root["statement"]["workload"] == wid and root["statement"]["size"] == N
        report = w.verify()
        assert report.ok and report.checked == N - 1 and report.root == root["statement"]["root"]
        # records as a stream hands them over (commit order): checked once the root exists
        taken = list(w.results())[::-1]
        assert w.verify(results=taken).checked == N - 1
        taken[3]["result"]["label"] = "forged"
        with pytest.raises(IntegrityError, match=f"record {taken[3]['id']} differs"):
            w.verify(results=taken)
        proof = w.proof(11)
        assert proof["record"]["value"]["square"] == 121
        assert check_proof(proof, pub.read_bytes()) == report.signer


def test_a_replayed_root_and_an_untrusted_key_fail_naming_them(signed, rqp_cli, kek, tmp_path):
    c, _key, pub, (wid, other, *_) = signed
    _, stranger = make_signer(tmp_path / "stranger", "stranger")
    code, out = rqp_cli("verify", wid, "--signer", str(stranger))
    assert code == 4 and "not a trusted results key" in out, out
    # whoever holds the data key (a processor) re-seals the summary with another workload's root
    store = FileBlobStore(c.root / "blobs")
    keys = LocalKeyProvider(private_key_file=kek[0])
    trust = TrustStore.from_file(c.trusted_signers)
    w, w2 = (Workload.open(store, keys, x, trust) for x in (wid, other))
    summary = Summary.from_json(w.open_sealed("summary", "", store.get(blob_name(wid, SUMMARY_BLOB))), wid)
    summary.root = Summary.from_json(
        w2.open_sealed("summary", "", store.get(blob_name(other, SUMMARY_BLOB))), other
    ).root
    store.put(blob_name(wid, SUMMARY_BLOB), summary.seal(w))
    code, out = rqp_cli("verify", wid, "--signer", str(pub))
    assert code == 4 and f"is workload '{other}''s" in out, out
