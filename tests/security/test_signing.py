"""Only trusted submitters' workloads run. The attackers: one who holds the public KEK and writes
to the blob store (an unsigned workload, or one signed by their own key), and one who replaces a
workload while it runs (re-packing it, or putting back an older signed version) -- through the
real programs, which must refuse before any key is unwrapped, byte decrypted or script imported:
one line, exit 4, naming the signer's fingerprint."""

from __future__ import annotations

import base64
import json
import time

import pytest
from harness import bin_path, make_signer
from rq import Queue, Worker

from rqp.jobs import ChunkSpec, seal_spec
from rqp.keys import LocalKeyProvider
from rqp.ledger import job_id
from rqp.signing import LocalSigningKey, TrustStore
from rqp.storage import FileBlobStore
from rqp.workload import Workload

from .conftest import QUEUE, job_data, one_error_line, push_raw_job, rejection_for, wait_job_done, wait_until

SCRIPT = "def process(record):\n    return record['n'] * 2\n"


def _manifest(cluster, wid):
    return cluster.root / "blobs" / "workloads" / wid / "manifest.json"


def _scheduler(cluster, wid, **env):
    return cluster.run(bin_path("rqp-scheduler"), "run", wid, check=False, env={"RQP_RQ_QUEUE": "unused", **env})


def _forge_job(cluster, wid: str, keys: LocalKeyProvider, trust: TrustStore, chunk: str = "c00000000") -> str:
    """A job whose spec is sealed under the workload's *current* data key: what a Redis writer
    who also made the blobs (and so knows that key) can enqueue."""
    store = FileBlobStore(cluster.root / "blobs")
    w = Workload.open(store, keys, wid, trust)
    jid = job_id(wid, chunk, 7)
    sealed = seal_spec(w, jid, ChunkSpec(wid, chunk, ((0, 3, 1),), 3, 0.05, 0.2, time.time()))
    return push_raw_job(cluster.r, jid, job_data("rqp.chunk", [wid, base64.b64encode(sealed).decode()]))


def _processor_ready(cluster):
    cluster.start_processor(workers=1)
    wait_until(
        lambda: Worker.count(connection=cluster.r, queue=Queue(QUEUE, connection=cluster.r)) >= 1,
        60,
        "a worker",
        cluster.logs,
    )


def test_an_unsigned_workload_is_refused_before_its_key_is_unwrapped(cluster, kek):
    data = cluster.write_data("d.jsonl", [{"n": i} for i in range(5)])
    cluster.pack("unsigned", data, cluster.write_script("s.py", SCRIPT))
    # the attacker's workload: no signature (rqp before signing, or blobs written by hand) and a
    # wrapped key that would not even unwrap -- the refusal must come first
    path = _manifest(cluster, "unsigned")
    doc = json.loads(path.read_text())
    doc.pop("signature")
    path.write_text(json.dumps(doc))
    key = cluster.root / "blobs" / "workloads" / "unsigned" / "key.json"
    wrapped = json.loads(key.read_text())
    wrapped["wrapped"] = base64.b64encode(b"\0" * 384).decode()
    key.write_text(json.dumps(wrapped))
    expected = (
        "workload unsigned is not signed; rqp runs only workloads signed by a trusted submitter: re-pack it with a signing key "
        "(rqp keygen --signing; RQP_SIGNING_KEY_FILE or --signing-key)"
    )
    cp = _scheduler(cluster, "unsigned")
    assert cp.returncode == 4 and one_error_line(cp, "rqp-scheduler") == f"rqp-scheduler: error: {expected}"
    assert cluster.r.llen("rq:queue:unused") == 0 and not cluster.r.exists("rqp:w:unsigned:meta")
    for args in (("results", "unsigned"), ("status", "unsigned", "--record", "0")):
        cp = cluster.rqp(*args, check=False)
        assert cp.returncode == 4 and one_error_line(cp, "rqp") == f"rqp: error: {expected}", cp.stderr
    # a job naming it, written straight into Redis: the processor refuses it the same way
    _processor_ready(cluster)
    jid = push_raw_job(cluster.r, "rqp-unsigned-c00000000-0", job_data("rqp.chunk", ["unsigned", "AAAA"]))
    assert wait_job_done(cluster.r, jid, logs=cluster.logs) == b"failed"
    entry = wait_until(lambda: rejection_for(cluster.r, jid), 10, "the rejection")
    assert expected in entry["reason"] and "rejected before any user code ran" in entry["reason"]


def test_a_workload_signed_by_an_untrusted_key_is_refused(cluster, tmp_path):
    stranger_key, _ = make_signer(tmp_path / "stranger", "stranger")
    stranger = LocalSigningKey(stranger_key)
    data = cluster.write_data("d.jsonl", [{"n": i} for i in range(5)])
    cluster.pack("strangers", data, cluster.write_script("s.py", SCRIPT), "--signing-key", str(stranger_key))
    assert json.loads(_manifest(cluster, "strangers").read_text())["signature"]["signer"] == stranger.fingerprint
    cp = _scheduler(cluster, "strangers")
    line = one_error_line(cp, "rqp-scheduler")
    assert cp.returncode == 4
    assert line == (
        f"rqp-scheduler: error: workload strangers is signed by {stranger.fingerprint}, which is not a trusted signer "
        f"(RQP_TRUSTED_SIGNERS_FILE {cluster.trusted_signers}); add the submitter's public key there, or re-pack with a trusted key"
    )
    # trusting the stranger (the operator's decision) is all it takes
    with open(cluster.trusted_signers, "ab") as fh:
        fh.write(b"# the stranger, now trusted\n" + stranger.public_pem())
    _processor_ready(cluster)
    code, out = cluster.schedule("strangers")
    assert code == 0, out
    assert cluster.results("strangers") == {i: 2 * i for i in range(5)}


@pytest.mark.parametrize("field", ["data.size", "created", "format", "workload"])
def test_a_signed_workload_altered_after_signing_is_refused(cluster, field):
    data = cluster.write_data("d.jsonl", [{"n": i} for i in range(5)])
    cluster.pack("altered", data, cluster.write_script("s.py", SCRIPT))
    path = _manifest(cluster, "altered")
    doc = json.loads(path.read_text())
    signer = doc["signature"]["signer"]
    if field == "data.size":
        doc["data"]["plain_size"] += 1
    elif field == "created":
        doc["created"] -= 86400
    elif field == "format":
        doc["format"] = "csv"
    else:  # another workload's signed manifest, moved under this id
        cluster.pack("other", data, cluster.write_script("s.py", SCRIPT))
        doc = json.loads(_manifest(cluster, "other").read_text())
        signer = doc["signature"]["signer"]
    path.write_text(json.dumps(doc))
    cp = _scheduler(cluster, "altered")
    line = one_error_line(cp, "rqp-scheduler")
    assert cp.returncode == 4, line
    if field == "workload":
        assert (
            line
            == "rqp-scheduler: error: manifest under workload altered names workload other: blobs were moved; re-pack"
        )
    else:
        assert line.startswith(f"rqp-scheduler: error: workload altered differs from what {signer} signed"), line


GATED = """
import os, time

def process(record):
    # record 5 waits for the test to open the gate (a read-only path it was granted)
    while record["n"] == 5 and not os.path.exists({gate!r}):
        time.sleep(0.05)
    return {tag!r}
"""


def test_a_workload_replaced_while_unfinished_is_refused_not_run(cluster, kek):
    """The blob writer's attack: with the scheduler down, ``rqp pack --id payroll --replace``
    swaps an unfinished workload for another (here signed by a trusted key too: an insider, or
    an older genuine version put back). The restarted scheduler and every processor refuse it."""
    gate = cluster.root / "gate"
    gate.mkdir()
    cluster.env.update(RQP_SANDBOX_READ_PATHS=str(gate), RQP_CHUNK_SIZE="4", RQP_ADAPTIVE_CHUNKS="false")
    data = cluster.write_data("d.jsonl", [{"n": i} for i in range(20)])
    cluster.pack("payroll", data, cluster.write_script("v1.py", GATED.format(gate=str(gate / "open"), tag="v1")))
    cluster.start_processor(workers=1)
    sched = cluster.start_scheduler("payroll")
    cluster.wait_for(
        lambda: int(cluster.r.hget("rqp:w:payroll:meta", "enqueued") or 0) == 20, 60, "the workload to be queued"
    )
    cluster.wait_for(lambda: cluster.r.bitcount("rqp:w:payroll:done") >= 4, 60, "the first chunk to finish")
    sched.kill()
    sched.wait()
    cluster.stop()  # the whole fleet down, the workload unfinished

    cluster.pack(
        "payroll", data, cluster.write_script("v2.py", GATED.format(gate=str(gate / "open"), tag="v2")), "--replace"
    )
    (gate / "open").touch()
    done_before = cluster.r.bitcount("rqp:w:payroll:done")
    cp = _scheduler(cluster, "payroll")
    line = one_error_line(cp, "rqp-scheduler")
    assert cp.returncode == 4, line
    signer = json.loads(_manifest(cluster, "payroll").read_text())["signature"]["signer"]
    assert line == (
        f"rqp-scheduler: error: workload payroll was replaced while unfinished: this version (signed by {signer}) is not the one "
        f"pinned at its first start; let that one finish, and submit the new one under a new id"
    )
    # a processor that never saw v1 gets a job sealed under v2's own key (the replacer knows it)
    _processor_ready(cluster)
    jid = _forge_job(
        cluster,
        "payroll",
        LocalKeyProvider(private_key_file=kek[0]),
        TrustStore.from_file(cluster.trusted_signers),
        "c00000004",
    )
    assert wait_job_done(cluster.r, jid, logs=cluster.logs) == b"failed"
    entry = wait_until(lambda: rejection_for(cluster.r, jid), 10, "the rejection")
    assert "workload payroll was replaced while unfinished" in entry["reason"]
    # nothing of v2 ran: no record was done after the swap
    assert cluster.r.bitcount("rqp:w:payroll:done") == done_before < 20
    assert cluster.r.llen("rq:queue:unused") == 0


def test_keygen_signing_and_the_trusted_file_through_the_cli(cluster, tmp_path):
    """The operator's path: make a key, print its public half into the roles' file, pack, run."""
    cp = cluster.rqp("keygen", "--signing", "--out", str(tmp_path / "alice.pem"))
    assert (tmp_path / "alice.pem").stat().st_mode & 0o777 == 0o600
    out = cp.stdout.decode()
    assert "submitter signing key sha256:" in out and "(Ed25519)" in out and "RQP_TRUSTED_SIGNERS_FILE" in out
    again = cluster.rqp("keygen", "--signing", "--out", str(tmp_path / "alice.pem"), check=False)
    assert again.returncode == 3 and "already exists" in again.stderr.decode()
    pem = cluster.rqp("signer", "--pem", "--signing-key", str(tmp_path / "alice.pem")).stdout
    trusted = tmp_path / "trusted.pem"
    trusted.write_bytes(pem)
    fp = cluster.rqp("signer", "--signing-key", str(tmp_path / "alice.pem")).stdout.decode().split()[0]
    assert TrustStore.from_file(trusted).signers[fp].name.startswith(fp)
    env = {"RQP_SIGNING_KEY_FILE": str(tmp_path / "alice.pem"), "RQP_TRUSTED_SIGNERS_FILE": str(trusted)}
    data = cluster.write_data("d.jsonl", [{"n": i} for i in range(3)])
    cp = cluster.rqp("pack", str(data), str(cluster.write_script("s.py", SCRIPT)), "--id", "alices", env=env)
    assert f"signed by {fp}" in cp.stderr.decode()
    cluster.env.update(env)
    cluster.start_processor(workers=1)
    code, out = cluster.schedule("alices")
    assert code == 0, out
    assert cluster.results("alices") == {0: 0, 1: 2, 2: 4}
