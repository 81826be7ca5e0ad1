"""Issue 24 item 1, the scheduler's side: every refusal of a submission -- untrusted signer,
unsigned, tampered with, a wrapped key that does not unwrap, expired, deleted once -- is kept in
``rqp:refused`` with its reason and announced on the events queue; and, SECURITY.md's Redis
writer in mind, a refusal in Redis never stops a real (signed, trusted) workload, nor makes one
that runs look refused."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from harness import make_signer

from rqp import control
from rqp.cli import main as rqp_main
from rqp.ledger import REFUSED, Ledger, Refusal, manifest_sha256, read_refusal
from rqp.messages import open_envelope
from rqp.signing import LocalSigningKey
from rqp.workload import blob_name, pack


@pytest.fixture
def sched(world) -> Iterator[Any]:
    from rqp_scheduler.scheduler import Scheduler

    s = Scheduler(world.settings)
    yield s
    for run in s.runs.values():
        run.stream.close()
    s.hosts.close()
    s.writer.shutdown(wait=True)


def _pack(world, wid: str, key: Any = None, expires: float | None = None) -> None:
    data, script = world.root / f"{wid}.jsonl", world.root / f"{wid}.py"
    data.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(6)))
    script.write_text("def process(r):\n    return r['n']\n")
    pack(world.store, world.keys, wid, data, script, signer=key or world.signer.key, expires=expires)


def _edit(world, wid: str, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = world.root / "blobs" / "workloads" / wid / name
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _untrusted(world, wid: str) -> None:
    key, _ = make_signer(world.root / "untrusted", "untrusted")
    _pack(world, wid, LocalSigningKey(key))


def _unsigned(world, wid: str) -> None:
    _pack(world, wid)
    _edit(world, wid, "manifest.json", lambda d: d.pop("signature"))


def _tampered(world, wid: str) -> None:
    _pack(world, wid)
    _edit(world, wid, "manifest.json", lambda d: d.update(created=d["created"] - 60))


def _unreadable(world, wid: str) -> None:
    _pack(world, wid)
    _edit(world, wid, "key.json", lambda d: d.update(wrapped=base64.b64encode(b"\0" * 384).decode()))


def _expired(world, wid: str) -> None:
    _pack(world, wid, expires=time.time() - 1)


CASES = {
    "untrusted": (_untrusted, "not a trusted signer"),
    "unsigned": (_unsigned, "is not signed"),
    "tampered": (_tampered, "tampered with"),
    "unreadable": (_unreadable, "tampered with"),  # the wrapped key is signed: changing it is tampering
    "expired": (_expired, "expired at"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_refusal_is_kept_with_its_reason_and_announced(world, sched, case):
    make, says = CASES[case]
    wid = f"refused-{case}"
    make(world, wid)
    world.r.rpush("rqp:submissions", wid)
    sched.tick(serve=True)
    assert wid not in sched.runs and says in sched.failures[wid]
    refusal = read_refusal(world.r, wid)
    assert refusal is not None and refusal.reason == sched.failures[wid] and refusal.code == 4
    assert refusal.manifest == manifest_sha256(world.store.get(blob_name(wid, "manifest.json")))
    assert not Ledger(world.r, wid).exists()  # nothing of it started
    [msg] = world.mq().receive(world.settings.events_queue, 10)
    env = open_envelope(msg.body, lambda w: pytest.fail(f"a refusal must not open workload {w}"), "rqp-events")
    assert (env.kind, env.workload, env.verified) == ("refused", wid, False)
    assert env.payload["reason"] == refusal.reason and env.payload["verified"] is False


def test_a_deleted_workloads_blobs_uploaded_again_are_refused_and_shown(world, sched, proc, operator):
    wid = "tombstoned"
    _pack(world, wid)
    saved = {p.name: p.read_bytes() for p in (world.root / "blobs" / "workloads" / wid).iterdir() if p.is_file()}
    world.r.rpush("rqp:submissions", wid)
    sched.tick(serve=True)
    world.run_to_end(sched.runs.pop(wid), proc)
    control.delete(world.r, world.store, operator.key, wid, "ops@test")
    for name, raw in saved.items():  # the signed blobs, uploaded again
        world.store.put(blob_name(wid, name), raw)
    world.r.rpush("rqp:submissions", wid)
    sched.tick(serve=True)
    refusal = read_refusal(world.r, wid)
    assert refusal is not None and "deleted" in refusal.reason


def test_a_forged_refusal_neither_stops_a_real_workload_nor_shows_on_one(world, sched, proc, cli_env, capsys):
    """A Redis writer's refusal of a signed, trusted workload, well formed and naming its manifest:
    the scheduler runs it all the same (and removes the entry), and while it runs ``rqp status``
    shows its real state."""
    wid = "real"
    _pack(world, wid)
    manifest = manifest_sha256(world.store.get(blob_name(wid, "manifest.json")))
    forged = Refusal(wid, f"workload {wid} is not signed", 4, time.time(), "forger:1", manifest)
    world.r.hset(REFUSED, wid, forged.to_json())
    assert rqp_main(["status", wid]) == 4  # before it starts: shown, as Redis says, unverified
    assert "unverified" in capsys.readouterr().out
    world.r.rpush("rqp:submissions", wid)
    sched.tick(serve=True)
    assert wid in sched.runs and world.r.hget(REFUSED, wid) is None
    world.r.hset(REFUSED, wid, forged.to_json())  # forged again, while it runs
    assert rqp_main(["status", wid]) == 3
    out = capsys.readouterr().out
    assert "[running]" in out and "refused" not in out
    world.run_to_end(sched.runs.pop(wid), proc)
    assert rqp_main(["status", wid]) == 0
    assert "[done]" in capsys.readouterr().out


def test_junk_in_the_refusals_hash_reads_as_an_unreadable_refusal(world):
    world.r.hset(REFUSED, "junk", b"\xff\x00not json")
    refusal = read_refusal(world.r, "junk")
    assert refusal is not None and refusal.reason == "unreadable refusal entry (not rqp's)" and refusal.code == 4


def test_a_revoked_signers_workload_is_refused_and_kept(world):
    """A key revoked in the scheduler's trusted-signers file (``revoked: <fingerprint>``)."""
    from rqp_scheduler.scheduler import Scheduler

    key_path, _ = make_signer(world.root / "leaked", "leaked")
    leaked = LocalSigningKey(key_path)
    trusted = world.root / "trusted-with-revocation.pem"
    trusted.write_bytes(
        world.signer.trusted.read_bytes() + (world.root / "leaked" / "leaked.pub.pem").read_bytes()
        + f"revoked: {leaked.fingerprint}\n".encode()
    )  # fmt: skip
    _pack(world, "revoked-one", leaked)
    s = Scheduler(world.settings.replace(trusted_signers_file=str(trusted)))
    try:
        world.r.rpush("rqp:submissions", "revoked-one")
        s.tick(serve=True)
    finally:
        s.hosts.close()
        s.writer.shutdown(wait=True)
    refusal = read_refusal(world.r, "revoked-one")
    assert refusal is not None and "which is revoked" in refusal.reason and refusal.code == 4
