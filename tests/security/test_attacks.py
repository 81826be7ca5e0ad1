"""Attack rqp the way an intruder would: with write access to Redis or the blob store, or the
wrong key. Every attack must be rejected with a clear one-line error, recorded, and must never
run user code, import a callable named in Redis, or unpickle anything.

The module shares one real processor (``rqp-processor``, one worker) listening on the default RQ
queue, and two packed workloads that nobody scheduled: their script leaves a marker file if any
of it is ever imported or run, so "no user code ran" is checked on the filesystem, not assumed.
These attacks target the layer that decides whether user code runs *at all* (job and blob
authentication), so the processor runs scripts in-process (``RQP_SANDBOX=false``) where the
markers can be written; the sandbox that confines code which does run is attacked in
``test_sandbox.py``, and unsigned or untrusted workloads in ``test_signing.py``.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import pickle
import secrets
import shutil
import signal
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
import redis
from harness import Cluster, bin_path
from redis_server import RedisServer
from rq import Queue, Worker
from rq.job import Job

from rqp.config import Settings
from rqp.connect import connect_redis
from rqp.errors import RedisUnavailableError
from rqp.jobs import ChunkSpec, JSONSerializer, seal_spec
from rqp.keys import LocalKeyProvider
from rqp.ledger import Meta, WorkloadKeys, encode_pin, job_id
from rqp.signing import LocalSigningKey, TrustStore
from rqp.storage import FileBlobStore
from rqp.workload import Workload, pack

from .conftest import QUEUE, exc_info, job_data, one_error_line, push_raw_job, rejection_for, wait_job_done, wait_until

SCRIPT_WITH_MARKERS = """
import pathlib
_MARKS = pathlib.Path({marks!r})
(_MARKS / "script-imported-{wid}").touch()

def setup():
    (_MARKS / "setup-ran-{wid}").touch()

def process(record):
    (_MARKS / "process-ran-{wid}-{{}}".format(record["n"])).touch()
    return {{"n": record["n"] * 2}}
"""

EVIL_MODULE = """
import pathlib
pathlib.Path({marks!r}, "evilcb-imported").touch()

def hit(*args, **kwargs):
    pathlib.Path({marks!r}, "evilcb-called").touch()
"""


class Bench:
    """The attacker's view: Redis, the blob store, and (for genuine jobs to replay) the KEK."""

    def __init__(
        self, cluster: Cluster, r: redis.Redis, store: FileBlobStore, keys: LocalKeyProvider, marks: Path
    ) -> None:
        self.cluster = cluster
        self.r = r
        self.store = store
        self.keys = keys
        self.marks = marks
        self._n = 0

    def pack(self, wid: str, n: int = 5, script: str | None = None, marks: Path | None = None) -> str:
        root = self.cluster.root
        data = self.cluster.write_data(f"{wid}.jsonl", [{"n": i} for i in range(n)])
        src = script if script is not None else SCRIPT_WITH_MARKERS.format(marks=str(marks or self.marks), wid=wid)
        path = self.cluster.write_script(f"{wid}.py", src)
        pack(self.store, self.keys, wid, data, path, signer=LocalSigningKey(self.cluster.signing_key))
        assert (root / "blobs" / "workloads" / wid / "manifest.json").exists()
        return wid

    def start(self, wid: str) -> None:
        """Leave the start pin a scheduler leaves at a workload's first start (processors run
        chunks only of workloads a scheduler started), without scheduling anything."""
        w = Workload.open(self.store, self.keys, wid, TrustStore.from_file(self.cluster.trusted_signers))
        self.r.hset(WorkloadKeys(wid).meta, Meta.PIN, encode_pin(w.seal_pin()))

    def genuine(self, wid: str, chunk: str = "c00000000", gen: int = 0) -> tuple[str, str]:
        """(job id, base64 sealed spec) exactly as rqp's scheduler makes them (same code, same key)."""
        w = Workload.open(self.store, self.keys, wid, TrustStore.from_file(self.cluster.trusted_signers))
        jid = job_id(wid, chunk, gen)
        spec = ChunkSpec(wid, chunk, ((0, 3, 1),), 3, 0.05, 0.2, time.time())
        return jid, base64.b64encode(seal_spec(w, jid, spec)).decode()

    def unique(self, stem: str) -> str:
        self._n += 1
        return f"{stem}-{self._n}"

    def marks_present(self) -> list[str]:
        return sorted(p.name for p in self.marks.iterdir())

    def drain(self) -> None:
        """Push a sentinel job behind everything queued and wait for it: the single worker runs
        jobs one after another, so once the sentinel is done every earlier job has been fully
        handled, including callbacks and webhooks."""
        jid = push_raw_job(self.r, self.unique("sentinel"), job_data("rqp.chunk", ["no-such-workload", "AAAA"]))
        wait_job_done(self.r, jid, logs=self.cluster.logs)

    def run_forged(self, jid: str, data: bytes, **kw) -> bytes:
        push_raw_job(self.r, jid, data, **kw)
        return wait_job_done(self.r, jid, logs=self.cluster.logs)


@pytest.fixture(scope="module")
def bench(redis_server, kek, tmp_path_factory):
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    root = tmp_path_factory.mktemp("attacks")
    marks = root / "marks"
    marks.mkdir()
    cluster = Cluster(root / "cluster", redis_server.url, kek[0], extra_env={"RQP_SANDBOX": "false"})
    b = Bench(cluster, r, FileBlobStore(cluster.root / "blobs"), LocalKeyProvider(private_key_file=kek[0]), marks)
    for wid in ("wl-a", "wl-b"):
        b.pack(wid)
        b.start(wid)
    cluster.start_processor(workers=1)
    q = Queue(QUEUE, connection=r)
    wait_until(lambda: Worker.count(connection=r, queue=q) >= 1, 60, "the processor's worker to register", cluster.logs)
    yield b
    cluster.stop()
    r.close()


def assert_no_user_code(b: Bench) -> None:
    assert b.marks_present() == [], f"user code ran: {b.marks_present()}"


def assert_rejected(b: Bench, jid: str, *expected: str) -> str:
    """The job failed in RQ, is recorded in rqp:rejected with a one-line reason containing
    ``expected``, and that reason is what RQ recorded as the failure."""
    entry = wait_until(lambda: rejection_for(b.r, jid), 10, f"job {jid} in rqp:rejected", b.cluster.logs)
    reason = entry["reason"]
    assert "\n" not in reason and reason.strip() == reason, reason
    for text in expected:
        assert text in reason, reason
    assert b.r.hget(f"rq:job:{jid}", "status") == b"failed"
    failure = exc_info(b.r, jid)
    assert "ForbiddenJobError" in failure and reason[:60] in failure, failure
    return reason


# --------------------------------------------------------------------------- forged jobs
@pytest.mark.parametrize(
    "func_name, instance",
    [("os.system", None), ("subprocess.check_call", None), ("rqp.chunk", {"__class__": "os"})],
    ids=["os.system", "subprocess", "entry-point-on-an-instance"],
)
def test_forged_job_naming_a_callable_is_rejected_and_never_runs(bench, func_name, instance):
    marker = bench.marks / "forged-callable-ran"
    args = (
        [f"touch {marker}"]
        if func_name == "os.system"
        else [["touch", str(marker)]]
        if func_name.startswith("subprocess")
        else ["wl-a", "AAAA"]
    )
    jid = bench.unique("forged-callable")
    status = bench.run_forged(jid, job_data(func_name, args, instance=instance))
    assert status == b"failed"
    bench.drain()
    assert not marker.exists(), f"{func_name} named in Redis was executed"
    assert_no_user_code(bench)
    assert_rejected(bench, jid, f"job {jid}", "rqp runs only its own entry point")


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (["wl-a"], {}),
        (["wl-a", "AAAA", "extra"], {}),
        (["wl-a", {"not": "a string"}], {}),
        (["wl-a", "AAAA"], {"entry": "os.system"}),
    ],
    ids=["one-arg", "three-args", "non-string", "kwargs"],
)
def test_forged_entry_point_with_other_arguments_is_rejected(bench, args, kwargs):
    jid = bench.unique("forged-args")
    assert bench.run_forged(jid, job_data("rqp.chunk", args, kwargs=kwargs)) == b"failed"
    assert_rejected(
        bench,
        jid,
        f"job {jid} does not carry rqp's (workload, sealed spec) arguments",
        "rejected before any user code ran",
    )
    assert_no_user_code(bench)


@pytest.mark.parametrize("workload", ["wl-a", "no-such-workload"])
def test_forged_job_with_made_up_spec_is_rejected(bench, workload):
    jid = job_id(workload, "c00000042", 0)
    made_up = base64.b64encode(os.urandom(96)).decode()
    assert bench.run_forged(jid, job_data("rqp.chunk", [workload, made_up])) == b"failed"
    if workload == "wl-a":
        assert_rejected(
            bench,
            jid,
            f"job {jid} was not created by rqp's scheduler for workload wl-a",
            "rejected before any user code ran",
        )
    else:
        assert_rejected(
            bench,
            jid,
            "names workload 'no-such-workload', which rqp does not know",
            "rejected before any user code ran",
        )
    assert_no_user_code(bench)


def test_forged_plaintext_spec_is_rejected(bench):
    """A spec in the clear (what the sealed one decrypts to) is not accepted in its place."""
    jid = job_id("wl-a", "c00000043", 0)
    spec = ChunkSpec("wl-a", "c00000043", ((0, 5, 1),), 3, 0.0, 0.0, time.time())
    plain = base64.b64encode(spec.to_json()).decode()
    assert bench.run_forged(jid, job_data("rqp.chunk", ["wl-a", plain])) == b"failed"
    assert_rejected(bench, jid, "was not created by rqp's scheduler for workload wl-a")
    assert_no_user_code(bench)


def test_genuine_job_is_accepted(bench):
    """The control for the replay and bit-flip tests: the same job unaltered is not rejected
    (it is not pending, so it is skipped without running user code)."""
    jid, sealed = bench.genuine("wl-a", "c00000044")
    assert bench.run_forged(jid, job_data("rqp.chunk", ["wl-a", sealed])) == b"gone"  # succeeded, result_ttl 0
    assert rejection_for(bench.r, jid) is None
    assert_no_user_code(bench)


@pytest.mark.parametrize(
    "how",
    ["same-job-id-other-workload", "other-workloads-job-id", "another-chunk-of-the-same-workload"],
)
def test_job_replayed_from_another_workload_is_rejected(bench, how):
    jid_a, sealed_a = bench.genuine("wl-a", "c00000045")
    target, jid = {
        "same-job-id-other-workload": ("wl-b", jid_a),
        "other-workloads-job-id": ("wl-b", job_id("wl-b", "c00000045", 0)),
        "another-chunk-of-the-same-workload": ("wl-a", job_id("wl-a", "c00000046", 0)),
    }[how]
    assert bench.run_forged(jid, job_data("rqp.chunk", [target, sealed_a])) == b"failed"
    assert_rejected(
        bench,
        jid,
        f"job {jid} was not created by rqp's scheduler for workload {target}",
        "(forged, altered or replayed)",
    )
    assert_no_user_code(bench)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_flipped_bit_in_sealed_spec_is_rejected(bench, where):
    jid, sealed = bench.genuine("wl-a", "c00000047")
    raw = bytearray(base64.b64decode(sealed))
    pos = {"nonce": 3, "ciphertext": len(raw) // 2, "tag": len(raw) - 1}[where]
    raw[pos] ^= 0x01
    assert bench.run_forged(jid, job_data("rqp.chunk", ["wl-a", base64.b64encode(bytes(raw)).decode()])) == b"failed"
    assert_rejected(
        bench,
        jid,
        f"job {jid} was not created by rqp's scheduler for workload wl-a",
        "rejected before any user code ran",
    )
    assert_no_user_code(bench)


# --------------------------------------------------------------------------- RQ's own hooks
def test_callback_names_in_job_hash_are_never_imported(bench):
    evil = bench.cluster.root / "evilcb.py"  # the workers' working directory is on their sys.path
    evil.write_text(EVIL_MODULE.format(marks=str(bench.marks)))
    fields = {
        "success_callback_name": "evilcb.hit",
        "failure_callback_name": "evilcb.hit",
        "stopped_callback_name": "evilcb.hit",
    }
    # control: plain RQ, given this hash, imports and returns the attacker's function
    sys.path.insert(0, str(bench.cluster.root))
    try:
        job = Job("control", connection=bench.r, serializer=JSONSerializer)
        job.restore(
            {b"data": zlib.compress(job_data("rqp.chunk", [])), **{k.encode(): v.encode() for k, v in fields.items()}}
        )
        assert job.success_callback.__module__ == "evilcb"
        assert (bench.marks / "evilcb-imported").exists()
    finally:
        sys.path.remove(str(bench.cluster.root))
        sys.modules.pop("evilcb", None)
        (bench.marks / "evilcb-imported").unlink()
    try:
        jid_ok, sealed = bench.genuine("wl-a", "c00000048")
        assert bench.run_forged(jid_ok, job_data("rqp.chunk", ["wl-a", sealed]), **fields) == b"gone"  # success path
        jid_bad = bench.unique("forged-with-callbacks")
        assert bench.run_forged(jid_bad, job_data("os.getcwd", []), **fields) == b"failed"  # failure path
        bench.drain()
        assert_no_user_code(bench)  # neither evilcb-imported nor evilcb-called
    finally:
        evil.unlink()


class _HookServer:
    """An HTTP server on loopback that counts the requests it gets."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *a):
                pass

        self.hits = hits
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_webhooks_in_job_hash_are_never_called(bench):
    """RQ 2.5+ POSTs to any URL listed in a job hash's ``webhooks`` field when the job ends: a
    Redis writer could make every processor call out (SSRF, or a beacon). rqp jobs have none."""
    hooks = _HookServer()
    try:
        hook_list = [
            {"url": f"{hooks.url}/failed", "job_status": "failed"},
            {"url": f"{hooks.url}/finished", "job_status": "finished"},
        ]
        fields = {"webhooks": json.dumps(hook_list)}
        # control: plain RQ, given this hash, calls the URL
        job = Job("control", connection=bench.r, serializer=JSONSerializer)
        job.restore({b"data": zlib.compress(job_data("rqp.chunk", [])), b"webhooks": fields["webhooks"].encode()})
        job.send_webhooks("failed")
        assert hooks.hits == ["/failed"]
        hooks.hits.clear()
        jid_ok, sealed = bench.genuine("wl-a", "c00000049")
        assert bench.run_forged(jid_ok, job_data("rqp.chunk", ["wl-a", sealed]), **fields) == b"gone"
        jid_bad = bench.unique("forged-with-webhooks")
        assert bench.run_forged(jid_bad, job_data("os.getcwd", []), **fields) == b"failed"
        bench.drain()
        assert hooks.hits == [], f"a processor called URLs named in Redis: {hooks.hits}"
    finally:
        hooks.close()


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("compressed", [True, False], ids=["zlib", "raw"])
def test_pickle_payload_is_never_unpickled(bench, compressed):
    control = bench.cluster.root / f"control-unpickled-{compressed}"
    payload = pickle.dumps(_Evil(control))
    # control: the payload is live -- unpickling it runs the command
    pickle.loads(payload)
    assert control.exists()
    marker = bench.marks / "pickle-ran"
    payload = pickle.dumps(_Evil(marker))
    jid = bench.unique("pickled")
    assert bench.run_forged(jid, payload, compress=compressed) == b"failed"
    bench.drain()
    assert not marker.exists(), "a pickle from Redis was unpickled"
    assert_no_user_code(bench)
    assert_rejected(bench, jid, f"job {jid} carries a payload that is not an rqp job", "it was not deserialized")


# --------------------------------------------------------------------------- tampered data
def test_a_flipped_bit_or_a_moved_chunk_value_fails_only_that_chunks_records(bench):
    """A chunk's records are one sealed value (``rqp.chunk_records``): a bit flipped in one, or
    another chunk's value put in its place, fails that chunk's records -- each with the chunk's
    one line, not retried, ``process()`` never called on them -- and the other chunks complete."""
    marks = bench.cluster.root / "flip-marks"
    marks.mkdir()
    wid = bench.pack("wl-flip", n=30, marks=marks)
    env = {"RQP_RQ_QUEUE": "held-flip", "RQP_CHUNK_SIZE": "10", "RQP_ADAPTIVE_CHUNKS": "false"}
    sched = bench.cluster.start_scheduler(wid, env=env)  # no processor listens there until tampered with
    k = WorkloadKeys(wid)
    chunks = [k.chunk(f"c0000000{i}") for i in range(3)]
    wait_until(
        lambda: all(bench.r.exists(c) for c in chunks) and bench.r.llen("rq:queue:held-flip") == 3,
        30,
        "the records to be queued",
    )
    flipped = bytearray(bench.r.get(chunks[0]))
    flipped[len(flipped) // 2] ^= 0x80
    bench.r.set(chunks[0], bytes(flipped))
    bench.r.set(chunks[2], bench.r.get(chunks[1]))  # chunk 1's records, moved into chunk 2
    proc = bench.cluster.start_processor(1, env=env)
    try:
        out, _ = sched.communicate(timeout=90)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert sched.returncode == 1, out.decode()
    failures = bench.cluster.failures(wid)
    failed = set(range(0, 10)) | set(range(20, 30))
    assert set(failures) == failed, failures
    for rid in failed:
        chunk = f"c0000000{rid // 10}"
        assert failures[rid]["error"] == (
            f"the sealed records of chunk {chunk} of workload {wid} failed authentication: tampered with, cut, moved "
            f"from another chunk or workload, or its record ids edited; re-run the chunk or re-schedule the workload"
        )
        assert failures[rid]["attempts"] == 1  # an integrity failure is not retried
    assert bench.cluster.results(wid) == {i: {"n": 2 * i} for i in range(10, 20)}
    ran = {p.name for p in marks.iterdir()}
    assert {f"process-ran-{wid}-{i}" for i in failed}.isdisjoint(ran)
    assert {f"process-ran-{wid}-{i}" for i in range(10, 20)} <= ran


@pytest.mark.parametrize(
    "blob, expected, code",
    [
        (
            "data.enc",
            "data of workload {w} failed authentication at segment 0: tampered with, truncated, or encrypted under another key or workload",
            4,  # an integrity error, like the others (README: exit codes)
        ),
        (
            "script.enc",
            "script of workload {w} does not match its manifest digest: tampered with; re-pack the workload",
            4,
        ),
        # another workload's wrapped key: the submitter's signature covers the wrapped key
        ("key.json", "workload {w} differs from what sha256:", 4),
    ],
)
def test_tampered_workload_blobs_are_refused_by_the_scheduler(bench, blob, expected, code):
    marks = bench.cluster.root / f"marks-tamper-{blob}"
    marks.mkdir()
    wid = bench.pack(f"wl-tamper-{blob.split('.')[0]}", marks=marks)
    path = bench.cluster.root / "blobs" / "workloads" / wid / blob
    if blob == "key.json":
        # another workload's wrapped key (same KEK): unwraps fine, but to the wrong data key
        shutil.copy(bench.cluster.root / "blobs" / "workloads" / "wl-b" / "key.json", path)
    else:
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x04
        path.write_bytes(bytes(raw))
    cp = bench.cluster.run(bin_path("rqp-scheduler"), "run", wid, check=False, env={"RQP_RQ_QUEUE": "unused"})
    line = one_error_line(cp, "rqp-scheduler")
    assert cp.returncode == code, line
    assert expected.format(w=wid) in line, line
    assert bench.r.llen("rq:queue:unused") == 0  # nothing was queued
    ran = sorted(p.name for p in marks.iterdir())
    if blob == "data.enc":
        # the script itself is authentic: the scheduler imports it (for a parse() function)
        # before it reads the data, but not one record of the tampered data reaches process()
        assert ran == [f"script-imported-{wid}", f"setup-ran-{wid}"], ran
    else:
        assert ran == [], f"user code ran: {ran}"
    assert_no_user_code(bench)


SCRIPT_PLAIN = "def process(record):\n    return {'twice': record['n'] * 2}\n"


@pytest.fixture(scope="module")
def finished_pair(bench):
    """Two finished workloads with identical inputs, so their results have identical sizes."""
    for wid in ("wl-c", "wl-d"):
        bench.pack(wid, n=30, script=SCRIPT_PLAIN)
    code, out = bench.cluster.schedule("wl-c", "wl-d", timeout=90)
    assert code == 0, out
    return "wl-c", "wl-d"


@pytest.mark.parametrize(
    "blob, expected",
    [
        (
            "results.enc",
            "results of workload wl-c failed authentication at segment 0: tampered with, truncated, or encrypted under another key or workload",
        ),
        (
            "summary.enc",
            "summary of workload wl-c failed authentication: tampered with, moved from another record or workload, or encrypted under a different key",
        ),
    ],
)
def test_results_swapped_between_workloads_are_refused(bench, finished_pair, blob, expected):
    c, d = (bench.cluster.root / "blobs" / "workloads" / w / blob for w in finished_pair)
    assert bench.cluster.results("wl-c") == {i: {"twice": 2 * i} for i in range(30)}  # control
    if blob == "results.enc":
        assert c.stat().st_size == d.stat().st_size  # so only the cryptography can tell them apart
    saved = c.read_bytes()
    try:
        shutil.copy(d, c)
        cp = bench.cluster.rqp("results", "wl-c", check=False)
        line = one_error_line(cp, "rqp")
        assert cp.returncode == 4, line
        assert line == f"rqp: error: {expected}"
        assert cp.stdout == b""  # not a single line of the other workload's results
    finally:
        c.write_bytes(saved)


# --------------------------------------------------------------------------- keys and Redis access
def test_wrong_kek_is_a_clear_error(bench, other_kek):
    env = {"RQP_KEK_FILE": str(other_kek[0])}
    right = bench.keys.kek_id
    wrong = LocalKeyProvider(private_key_file=other_kek[0]).kek_id
    expected = (
        f"wrong key: the workload's data key is wrapped under KEK {right}, but the configured KEK is {wrong}; "
        f"point RQP_KEK_FILE at the key it was packed with"
    )
    cp = bench.cluster.rqp("results", "wl-a", check=False, env=env)
    assert cp.returncode == 3 and one_error_line(cp, "rqp") == f"rqp: error: {expected}"
    cp = bench.cluster.run(bin_path("rqp-scheduler"), "run", "wl-a", check=False, env={**env, "RQP_RQ_QUEUE": "unused"})
    assert cp.returncode == 3 and one_error_line(cp, "rqp-scheduler") == f"rqp-scheduler: error: {expected}"
    assert bench.r.llen("rq:queue:unused") == 0
    assert_no_user_code(bench)


def _refuses(bench: Bench, prog: list[str], env: dict[str, str], name: str) -> str:
    cp = bench.cluster.run(*prog, check=False, env=env, timeout=60)
    assert cp.returncode == 6, (cp.returncode, cp.stdout, cp.stderr)
    return one_error_line(cp, name)


def test_unauthenticated_redis_is_refused_when_insecure_is_not_allowed(bench):
    env = {"RQP_ALLOW_INSECURE_REDIS": "false", "RQP_RQ_QUEUE": "unused"}
    url = bench.cluster.redis_url
    expected = f"Redis at {url} is used without a password; set RQP_REDIS_PASSWORD_FILE, or RQP_ALLOW_INSECURE_REDIS=true to accept the risk"
    assert (
        _refuses(bench, [bin_path("rqp-processor"), "--workers", "1"], env, "rqp-processor")
        == f"rqp-processor: error: {expected}"
    )
    assert (
        _refuses(bench, [bin_path("rqp-scheduler"), "run", "wl-a"], env, "rqp-scheduler")
        == f"rqp-scheduler: error: {expected}"
    )
    assert bench.r.llen("rq:queue:unused") == 0
    assert bench.r.hkeys(WorkloadKeys("wl-a").meta) == [Meta.PIN.encode()]  # the scheduler touched nothing
    assert_no_user_code(bench)


def test_insecure_redis_is_refused_by_default(bench):
    """Issue 8: roles refuse an unauthenticated Redis "unless explicitly told to allow it"."""
    settings = Settings.load(env={"RQP_REDIS_URL": bench.cluster.redis_url})
    assert settings.allow_insecure_redis is False
    with pytest.raises(RedisUnavailableError, match="is used without a password; set RQP_REDIS_PASSWORD_FILE"):
        connect_redis(settings)


#: the least-privilege ACL user SECURITY.md recommends for the roles: rqp's and RQ's keys and
#: channels only, no administrative or dangerous commands (FLUSHALL, CONFIG, DEBUG, KEYS, ...)
ROLE_ACL = ["~rqp:*", "~rq:*", "resetchannels", "&rq:*", "+@all", "-@dangerous", "+info", "+client|setname"]


def test_password_protected_redis_with_an_acl_user(tmp_path, kek):
    """A Redis with a password and a restricted ACL user: roles given the user in the URL and its
    password in RQP_REDIS_PASSWORD_FILE run a workload end to end with
    RQP_ALLOW_INSECURE_REDIS=false; without the file, or with the wrong password, they refuse."""
    admin_password = secrets.token_urlsafe(24)
    password = secrets.token_urlsafe(24)
    server = RedisServer(password=admin_password).start()
    admin = redis.Redis(host="127.0.0.1", port=server.port, password=admin_password)
    try:
        assert admin.execute_command("ACL", "SETUSER", "rqp", "reset", "on", f">{password}", *ROLE_ACL) == b"OK"
        pw = tmp_path / "redis-password"
        fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, password.encode() + b"\n")
        os.close(fd)
        bad = tmp_path / "wrong-password"
        bad.write_text("not-the-password\n")
        url = f"redis://rqp@127.0.0.1:{server.port}/0"
        env = {"RQP_REDIS_PASSWORD_FILE": str(pw), "RQP_ALLOW_INSECURE_REDIS": "false"}
        cluster = Cluster(tmp_path / "cluster", url, kek[0], extra_env=env)
        try:
            cp = cluster.run(
                bin_path("rqp-processor"),
                "--workers",
                "1",
                check=False,
                env={"RQP_REDIS_PASSWORD_FILE": ""},
                timeout=60,
            )
            assert cp.returncode == 6
            assert (
                one_error_line(cp, "rqp-processor")
                == f"rqp-processor: error: Redis at {url} requires a password; set RQP_REDIS_PASSWORD_FILE"
            )
            cp = cluster.run(
                bin_path("rqp-scheduler"),
                "run",
                "pw",
                check=False,
                env={"RQP_REDIS_PASSWORD_FILE": str(bad)},
                timeout=60,
            )
            assert cp.returncode == 6
            assert (
                one_error_line(cp, "rqp-scheduler")
                == f"rqp-scheduler: error: Redis at {url} refused the password; check RQP_REDIS_PASSWORD_FILE"
            )
            data = cluster.write_data("d.jsonl", [{"n": i} for i in range(40)])
            script = cluster.write_script("s.py", SCRIPT_PLAIN)
            cluster.pack("pw", data, script)
            cluster.start_processor(workers=1)
            code, out = cluster.schedule("pw", timeout=90)
            assert code == 0, out + cluster.logs()
            assert cluster.results("pw") == {i: {"twice": 2 * i} for i in range(40)}
            assert admin.hget(WorkloadKeys("pw").meta, "state") == b"done"
            denials = [e for e in admin.acl_log() if e["reason"] != "auth"]  # "auth": the wrong password above
            assert denials == [], denials  # the roles needed no command, key or channel the ACL denies
            role = redis.Redis(host="127.0.0.1", port=server.port, username="rqp", password=password)
            for denied in (role.flushall, lambda: role.config_get("*"), lambda: role.set("elsewhere", 1)):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    denied()
            role.close()
            with pytest.raises(redis.AuthenticationError):
                redis.Redis.from_url(server.url).ping()
        finally:
            cluster.stop()
    finally:
        admin.close()
        server.stop()


def test_a_redis_without_a_password_is_refused_when_one_is_configured(bench, tmp_path):
    """redis-py quietly goes on when the server has no password to check: the roles must not."""
    pw = tmp_path / "pw"
    pw.write_text("a-password-the-server-never-asked-for")
    pw.chmod(0o600)
    env = {"RQP_REDIS_PASSWORD_FILE": str(pw), "RQP_ALLOW_INSECURE_REDIS": "false", "RQP_RQ_QUEUE": "unused"}
    line = _refuses(bench, [bin_path("rqp-processor"), "--workers", "1"], env, "rqp-processor")
    assert line == (
        f"rqp-processor: error: Redis at {bench.cluster.redis_url} accepts clients without a password although "
        "RQP_REDIS_PASSWORD_FILE is set; set requirepass (or disable the default user) on the server"
    )
