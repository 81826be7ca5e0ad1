"""Replay after delete and signature expiry (issue #23 item 6): a deleted workload's signed blobs
uploaded again are refused, and a workload past its signed expiry does not run."""

from __future__ import annotations

import json
import time

import pytest
from world import world  # noqa: F401 - fixture

from rqp import control
from rqp.backends import Backends
from rqp.errors import IntegrityError
from rqp.ledger import TOMBSTONES
from rqp.workload import Workload, pack


@pytest.fixture
def cli_env_world(world, monkeypatch):  # noqa: F811
    """The ``rqp`` command line pointed at the world's Redis, blobs and keys."""
    monkeypatch.setenv("RQP_REDIS_URL", world.settings.redis_url)
    monkeypatch.setenv("RQP_BLOB_URL", world.settings.blob_url)
    monkeypatch.setenv("RQP_ALLOW_INSECURE_REDIS", "true")
    monkeypatch.setenv("RQP_KEK_FILE", str(world.settings.kek_file))


def _backends(world):  # noqa: F811
    return Backends(world.settings, redis_client=world.r, blobs=world.store, keys=world.keys, trust=world.trust())


def test_a_deleted_workloads_blobs_uploaded_again_are_refused(world):  # noqa: F811
    wid = world.pack("gone", [{"n": 1}, {"n": 2}])
    saved = {name: world.store.get(name) for name in world.store.list(f"workloads/{wid}/")}
    assert _backends(world).workload(wid).id == wid  # opens before the delete
    control.delete(world.r, world.store, world.signer.key, wid, "alice@host")
    assert world.r.hlen(TOMBSTONES) == 1
    for name, raw in saved.items():  # the attacker who can write the blob store puts them back
        world.store.put(name, raw)
    with pytest.raises(IntegrityError, match=rf"workload {wid} was deleted by alice@host .* pack it anew"):
        _backends(world).workload(wid)


def test_a_new_workload_under_a_deleted_id_runs(world):  # noqa: F811
    wid = world.pack("again", [{"n": 1}])
    control.delete(world.r, world.store, world.signer.key, wid, "alice@host")
    world.pack(wid, [{"n": 5}])  # packed anew: another creation time, another digest
    assert _backends(world).workload(wid).id == wid


def test_an_expired_signature_does_not_run_and_cannot_be_extended(world, tmp_path):  # noqa: F811
    data, script = tmp_path / "d.jsonl", tmp_path / "s.py"
    data.write_text(json.dumps({"n": 1}) + "\n")
    script.write_text("def process(r):\n    return r\n")
    pack(world.store, world.keys, "short", data, script, signer=world.signer.key, expires=time.time() - 1)
    w = _backends(world).workload("short")
    with pytest.raises(IntegrityError, match="signature of workload short expired"):
        w.check_runnable(time.time())
    # moving the expiry in the manifest breaks the signature
    name = "workloads/short/manifest.json"
    doc = json.loads(world.store.get(name))
    doc["expires"] = time.time() + 86400
    world.store.put(name, json.dumps(doc).encode())
    with pytest.raises(IntegrityError, match="differs from what"):
        Workload.open(world.store, world.keys, "short", world.trust())


def test_the_scheduler_does_not_start_an_expired_workload_and_pack_sets_the_expiry(world, tmp_path, cli_env_world):  # noqa: F811
    data, script = tmp_path / "d.jsonl", tmp_path / "s.py"
    data.write_text(json.dumps({"n": 1}) + "\n")
    script.write_text("def process(r):\n    return r\n")
    pack(world.store, world.keys, "stale", data, script, signer=world.signer.key, expires=time.time() - 1)
    with pytest.raises(IntegrityError, match="signature of workload stale expired"):
        world.run("stale")
    assert world.r.exists("rqp:w:stale:meta") == 0  # nothing of it was started

    from rqp.cli import main as rqp_main

    before = time.time()
    assert rqp_main(["pack", str(data), str(script), "--id", "fresh", "--expires", "7d"]) == 0
    expires = json.loads(world.store.get("workloads/fresh/manifest.json"))["expires"]
    assert before + 7 * 86400 - 5 < expires < time.time() + 7 * 86400 + 5
    with pytest.raises(SystemExit) as bad:
        rqp_main(["pack", str(data), str(script), "--id", "never", "--expires", "soon"])
    assert bad.value.code == 2
