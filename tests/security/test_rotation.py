"""KEK rotation: ``rqp rotate-key`` re-wraps every workload's data key under a new KEK and re-signs
its manifest, without re-encrypting or touching any data; afterwards the old KEK can be revoked
(deleted) and everything still works under the new one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from rqp.cli import main as rotate_main
from rqp.cli.keys import add_rotate_command
from rqp.errors import KeyProviderError, WrongKeyError
from rqp.keys import LocalKeyProvider, WrappedKey, generate_kek
from rqp.rotate import (
    ALREADY,
    ERROR,
    ROTATED,
    list_workloads,
)
from rqp.rotate import (
    rotate_keys as _rotate_keys,
)
from rqp.signing import LocalSigningKey, TrustStore
from rqp.storage import FileBlobStore
from rqp.workload import Manifest, Workload, pack

SCRIPT = "def process(record):\n    return record['n'] + 1000\n"


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _pack(store: FileBlobStore, keys, tmp: Path, wid: str, n: int = 10, signer=None) -> None:
    data = tmp / f"{wid}.jsonl"
    data.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(n)))
    script = tmp / f"{wid}.py"
    script.write_text(SCRIPT)
    pack(store, keys, wid, data, script, signer=signer or LocalSigningKey(Path(os.environ["RQP_SIGNING_KEY_FILE"])))


def _trust() -> TrustStore:
    return TrustStore.from_file(Path(os.environ["RQP_TRUSTED_SIGNERS_FILE"]))


class _Workload:
    """``Workload.open`` with the session's trusted signers."""

    @staticmethod
    def open(store, keys, wid):
        return Workload.open(store, keys, wid, _trust())


def rotate_keys(store, old, new, workloads, signer=None, trust=None):
    return _rotate_keys(
        store,
        old,
        new,
        workloads,
        trust=trust or _trust(),
        signer=signer or LocalSigningKey(Path(os.environ["RQP_SIGNING_KEY_FILE"])),
    )


@pytest.fixture
def keys(kek, other_kek):
    return LocalKeyProvider(private_key_file=kek[0]), LocalKeyProvider(private_key_file=other_kek[0])


def test_rotate_keys_rewraps_without_touching_data(tmp_path, keys):
    old, new = keys
    store = FileBlobStore(tmp_path / "blobs")
    for wid in ("w1", "w2", "w3"):
        _pack(store, old, tmp_path, wid)
    before = _digests(tmp_path / "blobs")
    plain_before = {w: b"".join(_Workload.open(store, old, w).data_chunks()) for w in ("w1", "w2", "w3")}
    assert list_workloads(store) == ["w1", "w2", "w3"]

    results = rotate_keys(store, old, new, None)
    assert [(r.workload, r.status, r.old_kek_id, r.new_kek_id) for r in results] == [
        (w, ROTATED, old.kek_id, new.kek_id) for w in ("w1", "w2", "w3")
    ]
    assert all(r.ok and r.error is None for r in results)
    assert (
        results[0].line()
        == f"w1: rotated: data key re-wrapped from {old.kek_id} to {new.kek_id}; manifest re-signed; data untouched"
    )

    after = _digests(tmp_path / "blobs")
    changed = sorted(k for k in after if after[k] != before.get(k))
    assert changed == sorted(
        f"workloads/{w}/{leaf}" for w in ("w1", "w2", "w3") for leaf in ("key.json", "manifest.json")
    )
    assert set(after) == set(before)  # no blob added or removed (no temp files left either)
    for w in ("w1", "w2", "w3"):
        wk = WrappedKey.from_json((tmp_path / "blobs" / "workloads" / w / "key.json").read_bytes())
        m = Manifest.from_json((tmp_path / "blobs" / "workloads" / w / "manifest.json").read_bytes(), w)
        assert wk.kek_id == new.kek_id and m.kek_id == new.kek_id
        opened = _Workload.open(store, new, w)  # unwraps under the new KEK and verifies the new MAC
        assert b"".join(opened.data_chunks()) == plain_before[w]
        assert opened.script_source() == SCRIPT.encode()
        with pytest.raises(
            WrongKeyError, match=f"wrapped under KEK {new.kek_id}, but the configured KEK is {old.kek_id}"
        ):
            _Workload.open(store, old, w)

    # idempotent: nothing left to do, nothing rewritten
    again = rotate_keys(store, old, new, None)
    assert [(r.workload, r.status) for r in again] == [(w, ALREADY) for w in ("w1", "w2", "w3")]
    assert again[0].line() == f"w1: already under {new.kek_id}; nothing to do"
    assert _digests(tmp_path / "blobs") == after


def test_rotation_of_named_workloads_only(tmp_path, keys):
    old, new = keys
    store = FileBlobStore(tmp_path / "blobs")
    for wid in ("w1", "w2"):
        _pack(store, old, tmp_path, wid)
    res = rotate_keys(store, old, new, ["w2"])
    assert [(r.workload, r.status) for r in res] == [("w2", ROTATED)]
    _Workload.open(store, old, "w1")
    _Workload.open(store, new, "w2")
    missing = rotate_keys(store, old, new, ["nope"])
    assert missing[0].status == ERROR and missing[0].error.startswith("workload nope has no key.json in file://")


def test_rotation_refuses_a_tampered_manifest_and_a_wrong_old_key(tmp_path, keys, kek):
    old, new = keys
    store = FileBlobStore(tmp_path / "blobs")
    _pack(store, old, tmp_path, "w1")
    _pack(store, old, tmp_path, "w2")
    manifest = tmp_path / "blobs" / "workloads" / "w1" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"jsonl"', '"csv"'))
    before = _digests(tmp_path / "blobs")
    res = {r.workload: r for r in rotate_keys(store, old, new, None)}
    # never re-sign what does not verify: rotation must not launder a tampered manifest
    assert res["w1"].status == ERROR
    assert res["w1"].line().startswith("w1: error: workload w1 differs from what sha256:")
    assert res["w2"].status == ROTATED  # one bad workload does not stop the others
    after = _digests(tmp_path / "blobs")
    assert after["workloads/w1/key.json"] == before["workloads/w1/key.json"]
    assert after["workloads/w1/manifest.json"] == before["workloads/w1/manifest.json"]

    # the wrong old KEK: a clear error, nothing written
    third = tmp_path / "third"
    generate_kek(third / "kek.pem", third / "kek.pub.pem")
    wrong = LocalKeyProvider(private_key_file=third / "kek.pem")
    _pack(store, old, tmp_path, "w3")
    before = _digests(tmp_path / "blobs")
    res = rotate_keys(store, wrong, new, ["w3"])
    assert res[0].status == ERROR
    assert res[0].error.startswith(
        f"wrong key: the workload's data key is wrapped under KEK {old.kek_id}, but the configured KEK is {wrong.kek_id}"
    )
    assert "pass the KEK it is wrapped under as --old-kek" in res[0].error
    assert _digests(tmp_path / "blobs") == before


def test_interrupted_rotation_is_finished_by_running_it_again(tmp_path, keys):
    old, new = keys
    store = FileBlobStore(tmp_path / "blobs")
    _pack(store, old, tmp_path, "w1")
    # crash after key.json was rewritten (the signed one kept aside), before the manifest was
    signed_key = store.get("workloads/w1/key.json")
    data_key = old.unwrap(WrappedKey.from_json(signed_key))
    store.put("workloads/w1/key.previous.json", signed_key)
    store.put("workloads/w1/key.json", new.wrap(data_key).to_json())
    assert Manifest.from_json(store.get("workloads/w1/manifest.json"), "w1").kek_id == old.kek_id
    res = rotate_keys(store, None, new, None)  # the old KEK is not even needed any more
    assert res[0].status == ROTATED, res[0].line()
    assert Manifest.from_json(store.get("workloads/w1/manifest.json"), "w1").kek_id == new.kek_id
    _Workload.open(store, new, "w1")
    assert not store.exists("workloads/w1/key.previous.json")
    assert rotate_keys(store, None, new, None)[0].status == ALREADY

    # the same crash without the signed copy (key.json swapped by hand): refused, not laundered
    _pack(store, old, tmp_path, "w2")
    store.put(
        "workloads/w2/key.json",
        new.wrap(old.unwrap(WrappedKey.from_json(store.get("workloads/w2/key.json")))).to_json(),
    )
    res = rotate_keys(store, old, new, ["w2"])
    assert res[0].status == ERROR and "key.previous.json is missing: changed outside rqp" in res[0].error


def test_rotation_refuses_unsigned_and_untrusted_workloads_and_an_untrusted_rotator(tmp_path, keys):
    """Rotation re-signs, so it must never bless what the roles would refuse, and its own key
    must be one the roles trust."""
    from harness import make_signer

    old, new = keys
    store = FileBlobStore(tmp_path / "blobs")
    stranger = LocalSigningKey(make_signer(tmp_path / "stranger", "stranger")[0])
    _pack(store, old, tmp_path, "w1", signer=stranger)
    before = _digests(tmp_path / "blobs")
    res = rotate_keys(store, old, new, ["w1"])
    assert (
        res[0].status == ERROR and f"is signed by {stranger.fingerprint}, which is not a trusted signer" in res[0].error
    )
    assert _digests(tmp_path / "blobs") == before
    with pytest.raises(
        KeyProviderError, match=f"your signing key {stranger.fingerprint} is not in RQP_TRUSTED_SIGNERS_FILE"
    ):
        rotate_keys(store, old, new, ["w1"], signer=stranger)


def test_rotation_to_a_public_key_only(tmp_path, keys, other_kek):
    """Whoever rotates needs the old private key and only the new *public* key."""
    old, new = keys
    store = FileBlobStore(tmp_path / "blobs")
    _pack(store, old, tmp_path, "w1")
    new_public = LocalKeyProvider(public_key_file=other_kek[1])
    res = rotate_keys(store, old, new_public, None)
    assert res[0].status == ROTATED
    _Workload.open(store, new, "w1")


def test_rotate_key_command_then_revoke_the_old_key(cluster, tmp_path, kek):
    """The whole story through the real programs: a finished workload and a packed one, rotate
    with ``rqp rotate-key``, delete the old KEK, then read results and run the other workload
    with the new KEK only."""
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    shutil.copy(kek[0], old_dir / "kek.pem")
    shutil.copy(kek[1], old_dir / "kek.pub.pem")
    generate_kek(new_dir / "kek.pem", new_dir / "kek.pub.pem")
    cluster.env["RQP_KEK_FILE"] = str(old_dir / "kek.pem")
    data = cluster.write_data("d.jsonl", [{"n": i} for i in range(50)])
    script = cluster.write_script("s.py", SCRIPT)
    cluster.pack("done-before", data, script)
    cluster.pack("run-after", data, script)
    cluster.start_processor(workers=1)
    assert cluster.schedule("done-before")[0] == 0
    cluster.stop()
    blobs = cluster.root / "blobs" / "workloads"
    data_before = {p: p.read_bytes() for p in blobs.rglob("*.enc")}

    cp = cluster.rqp("rotate-key", "--new-kek", str(new_dir / "kek.pub.pem"), "--old-kek", str(old_dir / "kek.pem"))
    old_id = LocalKeyProvider(private_key_file=old_dir / "kek.pem").kek_id
    new_id = LocalKeyProvider(public_key_file=new_dir / "kek.pub.pem").kek_id
    assert cp.stdout.decode().splitlines() == [
        f"{w}: rotated: data key re-wrapped from {old_id} to {new_id}; manifest re-signed; data untouched"
        for w in ("done-before", "run-after")
    ]
    assert f"rotate-key: 2 rotated, 0 already under {new_id}, 0 failed" in cp.stderr.decode()
    assert {p: p.read_bytes() for p in blobs.rglob("*.enc")} == data_before  # data, script, results untouched
    # revoke the old KEK
    shutil.rmtree(old_dir)
    cluster.env["RQP_KEK_FILE"] = str(new_dir / "kek.pem")
    assert cluster.results("done-before") == {i: i + 1000 for i in range(50)}
    cluster.start_processor(workers=1)
    code, out = cluster.schedule("run-after")
    assert code == 0, out
    assert cluster.results("run-after") == {i: i + 1000 for i in range(50)}


def test_rotate_key_command_reports_failures_with_exit_1(tmp_path, kek, other_kek, capsys, monkeypatch):
    store = FileBlobStore(tmp_path / "blobs")
    _pack(store, LocalKeyProvider(private_key_file=kek[0]), tmp_path, "w1")
    monkeypatch.setenv("RQP_BLOB_URL", str(tmp_path / "blobs"))
    for k in ("RQP_KEK_FILE", "RQP_CONFIG", "RQP_KEY_VAULT_KEY_ID"):
        monkeypatch.delenv(k, raising=False)
    # no old KEK anywhere: one line for the workload, a summary, exit 1
    code = rotate_main(["rotate-key", "--new-kek", str(other_kek[0])])
    out, err = capsys.readouterr()
    assert code == 1
    assert (
        out.strip()
        == "w1: error: its data key is wrapped under KEK "
        + LocalKeyProvider(private_key_file=kek[0]).kek_id
        + " and no old KEK was given; pass it as --old-kek (or set RQP_KEK_FILE)"
    )
    assert "0 rotated, 0 already" in err and "1 failed" in err and "before revoking the old KEK" in err
    # the parser the lead wires into `rqp`
    import argparse

    ap = argparse.ArgumentParser(prog="rqp")
    add_rotate_command(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["rotate-key", "--new-kek", "n.pem", "--old-kek", "o.pem", "a", "b"])
    assert (args.new_kek, args.old_kek, args.workloads) == ("n.pem", "o.pem", ["a", "b"])
