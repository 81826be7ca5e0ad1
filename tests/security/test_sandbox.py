"""The insider: a trusted submitter's script that attacks the fleet it runs on.

Everything here goes through the real programs (``rqp pack``, ``rqp-scheduler``,
``rqp-processor``) with the sandbox as deployed (``RQP_SANDBOX`` on). The script is signed by a
trusted key, so nothing stops it from running: what is tested is what it can reach once it
runs -- at import and ``setup()`` in the scheduler and in the processors, and in ``process()``
next to a victim workload that the same worker has just processed (and whose data key it still
holds in its context cache). Each attack fails only the attacker's own record, and nothing of
value appears in its results, the logs, Redis, or on disk.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import redis
from harness import bin_path

from .conftest import one_error_line
from .test_plaintext import Markers, files_under, redis_values

VICTIM_SCRIPT = "def process(record):\n    return {'paid': record['salary'] * 2}\n"

INSIDER = r'''
import ctypes, gc, json, os, socket, sys

KEK = {kek!r}
REDIS = ({host!r}, {port})
BLOBS = {blobs!r}
VICTIM = {victim!r}
found = {{}}


def _try(name, fn):
    try:
        found[name] = fn()
    except BaseException as exc:  # noqa: BLE001
        found[name] = "blocked: " + type(exc).__name__


def _steal_kek_into_redis():
    # the exploit that worked before the sandbox: copy the KEK file into Redis at import
    s = socket.create_connection(REDIS, timeout=2)
    data = open(KEK, "rb").read()
    s.sendall(b"*3\r\n$3\r\nSET\r\n$6\r\nstolen\r\n$%d\r\n%s\r\n" % (len(data), data))
    return "sent"


# module level: runs in the scheduler's script host and in every processor's
_try("import_kek", lambda: open(KEK, "rb").read().decode())
_try("import_redis", _steal_kek_into_redis)
_try("import_blob_write", lambda: open(os.path.join(BLOBS, "stolen.txt"), "w").write("x"))


def setup():
    _try("setup_env", lambda: dict(os.environ))


def _memory_scan():
    """Walk every object of this interpreter, as the pre-sandbox exploit walked the worker's."""
    workloads = keys = victim = 0
    needle = VICTIM + "-"  # how the victim's records start (the script's own constant does not)
    bneedle = needle.encode()
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in ("Workload", "Sealer", "AESGCM", "LocalKeyProvider", "ContextCache"):
            workloads += 1
            key = getattr(obj, "__dict__", {{}}).get("key")
            if isinstance(key, bytes) and len(key) == 32:
                keys += 1
        items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple, set)) else ()
        for x in list(items):
            if x is needle or x is bneedle:
                continue
            if isinstance(x, (str, bytes)) and (needle in x if isinstance(x, str) else bneedle in x):
                victim += 1
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("rqp", "rqp_processor", "rqp_scheduler", "redis", "rq", "cryptography", "azure"))
    return {{"workload_objects": workloads, "keys": keys, "victim_strings": victim, "modules": loaded}}


def _ptrace_worker():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, os.getppid(), 0, 0) != 0:  # PTRACE_ATTACH
        raise PermissionError(ctypes.get_errno(), "ptrace refused")
    return "attached"


def process(record):
    a = record["attack"]
    if a == "report":
        return found
    if a == "kek":
        return open(KEK).read()
    if a == "worker_environ":
        return open("/proc/%d/environ" % os.getppid(), "rb").read().decode(errors="replace")
    if a == "worker_memory":
        return open("/proc/%d/mem" % os.getppid(), "rb").read(16).hex()
    if a == "ptrace":
        return _ptrace_worker()
    if a == "redis":
        socket.create_connection(REDIS, timeout=2)
        return "connected"
    if a == "unix_socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect("/run/docker.sock")
        return "connected"
    if a == "memory_scan":
        return _memory_scan()
    if a == "write_outside":
        with open(os.path.join(BLOBS, "..", "insider-was-here"), "w") as fh:
            fh.write("x")
        return "wrote"
    if a == "write_tmp":
        with open(os.path.join(os.environ["TMPDIR"], "scratch"), "w") as fh:
            fh.write("scratch space is fine")
        return "wrote"
    if a == "fork_bomb":
        while True:
            os.fork()
    if a == "exec":
        os.execv("/bin/sh", ["sh", "-c", "id"])
    if a == "alloc_10g":
        return len(bytearray(10 * 2**30))
    if a == "loop":
        while True:
            pass
    if a == "exit":
        raise SystemExit("leaking " + record["secret"])
    if a == "os_exit":
        os._exit(7)
    if a == "kill_worker":
        os.kill(os.getppid(), 9)
    return {{"ok": record["n"]}}
'''

#: attack -> what the record's failure must say (each fails alone)
BLOCKED = {
    "kek": "process() raised PermissionError",
    "worker_environ": "process() raised PermissionError",
    "worker_memory": "process() raised PermissionError",
    "ptrace": "process() raised PermissionError",
    "redis": "process() raised PermissionError",
    "unix_socket": "process() raised PermissionError",
    "write_outside": "process() raised PermissionError",
    "fork_bomb": "process() raised PermissionError",
    "exec": "process() raised PermissionError",
    "alloc_10g": "process() raised MemoryError",
    "loop": "timed out after 3 s (RQP_RECORD_TIMEOUT); the script process was replaced",
    "exit": "process() raised SystemExit: leaking INSIDER",
    "os_exit": "the script process exited with status 7",
    "kill_worker": "process() raised PermissionError",
}
ALLOWED_ENV = {
    "PATH",
    "LANG",
    "LC_ALL",
    "HOME",
    "TMPDIR",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "LC_CTYPE",
}


def test_an_insider_script_reaches_nothing_but_its_own_records(cluster, tmp_path, kek):
    token = secrets.token_hex(6)
    victim_marker, insider_marker = f"VICTIM{token}", f"INSIDER{token}"
    kek_text = Path(kek[0]).read_text()
    kek_body = "".join(kek_text.splitlines()[1:-1])[:64]  # a piece of the base64 body: no PEM header noise
    run_tmp = tmp_path / "run-tmp"
    run_tmp.mkdir()
    cluster.env.update(
        TMPDIR=str(run_tmp),
        RQP_RECORD_TIMEOUT="3",
        RQP_SCRIPT_MEMORY_MB="1024",
        RQP_MAX_ATTEMPTS="1",
        RQP_CHUNK_SIZE="64",
        RQP_ADAPTIVE_CHUNKS="false",
        RQP_REQUIRE_SANDBOX="true",
    )
    host, port = (
        cluster.r.connection_pool.connection_kwargs["host"],
        cluster.r.connection_pool.connection_kwargs["port"],
    )
    blobs = cluster.root / "blobs"

    # the victim: processed first by the same (single) worker, whose context cache keeps its key
    victim = cluster.write_data(
        "payroll.jsonl", [{"name": f"{victim_marker}-{i}", "salary": 1000 + i} for i in range(40)]
    )
    cluster.pack("payroll", victim, cluster.write_script("payroll.py", VICTIM_SCRIPT))
    processor = cluster.start_processor(workers=1)
    code, out = cluster.schedule("payroll")
    assert code == 0, out

    attacks = ["report", "ok", *BLOCKED, "memory_scan", "write_tmp", "ok"]
    records = [{"n": i, "attack": a, "secret": f"{insider_marker}-{i}"} for i, a in enumerate(attacks)]
    script = INSIDER.format(kek=str(kek[0]), host=host, port=port, blobs=str(blobs), victim=victim_marker)
    cluster.pack("insider", cluster.write_data("insider.jsonl", records), cluster.write_script("insider.py", script))
    [worker] = cluster.worker_pids()
    code, sched_out = cluster.schedule("insider", timeout=120)
    assert code == 1, sched_out  # its own attack records failed; the scheduler reports that
    assert cluster.worker_pids() == [worker] and processor.poll() is None  # the worker survived every attack

    results, failures = cluster.results("insider"), cluster.failures("insider")
    by_attack = {a: i for i, a in enumerate(attacks)}
    # every attack failed alone, with its reason; the other records are done
    for attack, reason in BLOCKED.items():
        i = by_attack[attack]
        assert i in failures, (attack, results.get(i))
        assert reason in failures[i]["error"], (attack, failures[i]["error"])
    assert set(failures) == {by_attack[a] for a in BLOCKED}
    assert results[1] == {"ok": 1} and results[len(attacks) - 1] == {"ok": len(attacks) - 1}
    # what the module-level code and setup() got: nothing
    report = results[0]
    assert report["import_kek"] == "blocked: PermissionError"
    assert report["import_redis"] == "blocked: PermissionError"
    assert report["import_blob_write"] == "blocked: PermissionError"
    assert set(report["setup_env"]) <= ALLOWED_ENV, report["setup_env"]
    assert report["setup_env"]["TMPDIR"].startswith(str(run_tmp) + "/rqp-script-")
    # no other workload's keys or records, and none of rqp's key-holding code, in its memory
    assert results[by_attack["memory_scan"]] == {"workload_objects": 0, "keys": 0, "victim_strings": 0, "modules": []}
    assert results[by_attack["write_tmp"]] == "wrote"  # its private temp dir works...
    cluster.stop()
    assert files_under(run_tmp) == [] and list(run_tmp.iterdir()) == []  # ...and is gone with its host

    # the victim is intact and readable by its owner
    assert cluster.results("payroll") == {i: {"paid": 2 * (1000 + i)} for i in range(40)}
    # nothing of value anywhere: not in the insider's results, the logs, Redis or the blob store
    marks = Markers(victim=victim_marker, insider=insider_marker, kek=kek_body)
    leaks = []
    insider_results = cluster.rqp("results", "insider").stdout
    if found := [m for m in marks.found(insider_results) if m != "insider"]:
        leaks.append(f"insider results: {found}")
    for name, text in (("scheduler output", sched_out.encode()), ("processor log", cluster.logs().encode())):
        if found := marks.found(text):
            leaks.append(f"{name}: {found}")
    r = redis.Redis(host=host, port=port)
    assert r.get("stolen") is None
    for where, raw in redis_values(r):
        if found := marks.found(raw):
            leaks.append(f"Redis {where}: {found}")
    r.close()
    for p in files_under(cluster.root):
        if p.suffix in (".jsonl", ".py", ".pem"):
            continue  # the inputs and keys the test itself wrote
        if found := marks.found(p.read_bytes()):
            leaks.append(f"file {p}: {found}")
    assert leaks == [], "\n".join(leaks)
    assert not (blobs / "stolen.txt").exists() and not (cluster.root / "insider-was-here").exists()


def test_control_the_memory_scan_finds_keys_where_scripts_run_in_process(cluster, kek):
    """Control for the scan above: with the sandbox off (``RQP_SANDBOX=false``, the script inside
    the worker) the same code finds the worker's cached workloads and their data keys -- the
    attack the sandbox exists to stop."""
    cluster.env.update(RQP_SANDBOX="false")
    host, port = (
        cluster.r.connection_pool.connection_kwargs["host"],
        cluster.r.connection_pool.connection_kwargs["port"],
    )
    cluster.pack(
        "payroll",
        cluster.write_data("p.jsonl", [{"name": "x", "salary": 1}]),
        cluster.write_script("p.py", VICTIM_SCRIPT),
    )
    script = INSIDER.format(kek=str(kek[0]), host=host, port=port, blobs=str(cluster.root / "blobs"), victim="nobody")
    cluster.pack(
        "insider",
        cluster.write_data("i.jsonl", [{"n": 0, "attack": "memory_scan"}]),
        cluster.write_script("i.py", script),
    )
    cluster.start_processor(workers=1)
    code, out = cluster.schedule("payroll")
    assert code == 0, out
    code, out = cluster.schedule("insider")
    assert code == 0, out
    scan = cluster.results("insider")[0]
    assert scan["workload_objects"] >= 2 and scan["keys"] >= 2, scan  # the victim's and its own
    assert "rqp.workload" in scan["modules"] and "cryptography" in scan["modules"]


PARSE_SCRIPT = r"""
import time

def parse(stream):
    for line in stream:
        if line.strip() == b"hang":
            while True:
                time.sleep(0.1)
        yield {{"line": line.decode().strip()}}
    try:
        yield {{"kek": open({kek!r}).read()}}
    except BaseException as exc:  # noqa: BLE001
        yield {{"kek": "blocked: " + type(exc).__name__}}

def process(record):
    return record
"""


def test_parse_runs_sandboxed_in_the_scheduler_and_a_hang_fails_the_workload(cluster, kek):
    """``--format script``: the scheduler's ``parse()`` is the user's code too. It reads its own
    data and nothing else, and a ``parse()`` that stops making progress fails the workload with
    the reason instead of holding the scheduler."""
    cluster.env.update(RQP_RECORD_TIMEOUT="2")
    script = cluster.write_script("p.py", PARSE_SCRIPT.format(kek=str(kek[0])))
    cluster.pack("parsed", cluster.write_data("p.txt", b"a\nb\nc\n"), script, "--format", "script")
    cluster.pack("hangs", cluster.write_data("h.txt", b"a\nhang\nc\n"), script, "--format", "script")
    cluster.start_processor(workers=1)
    code, out = cluster.schedule("parsed")
    assert code == 0, out
    assert cluster.results("parsed") == {
        0: {"line": "a"},
        1: {"line": "b"},
        2: {"line": "c"},
        3: {"kek": "blocked: PermissionError"},
    }
    code, out = cluster.schedule("hangs", timeout=60)
    assert code != 0
    assert "parse() in the script of workload hangs made no progress for 2 s (RQP_RECORD_TIMEOUT)" in out
    status = cluster.status("hangs")
    assert status["state"] == "failed"


PID_SCRIPT = "import os\n\ndef process(record):\n    return os.getpid()\n"


def test_a_script_process_serves_one_workload_only(cluster):
    """Two workloads through one worker: each gets script processes of its own (never the other's,
    and never the worker itself)."""
    data = cluster.write_data("d.jsonl", [{"n": i} for i in range(20)])
    cluster.pack("one", data, cluster.write_script("one.py", PID_SCRIPT))
    cluster.pack("two", data, cluster.write_script("two.py", PID_SCRIPT))
    cluster.start_processor(workers=1)
    code, out = cluster.schedule("one", "two")
    assert code == 0, out
    [worker] = cluster.worker_pids()
    one, two = set(cluster.results("one").values()), set(cluster.results("two").values())
    assert one and two and not one & two
    assert worker not in one | two


def test_require_sandbox_refuses_to_start_when_a_secret_is_within_the_scripts_reach(cluster, kek, tmp_path):
    """``RQP_REQUIRE_SANDBOX=true``: the roles check what a script host can actually reach, not
    just which features exist. Granting the scripts a directory that holds the KEK is refused."""
    exposed = Path(kek[0]).parent
    env = {"RQP_REQUIRE_SANDBOX": "true", "RQP_SANDBOX_READ_PATHS": str(exposed)}
    for cmd, prog in (
        ([bin_path("rqp-processor"), "--workers", "1"], "rqp-processor"),
        ([bin_path("rqp-scheduler"), "run", "nosuch"], "rqp-scheduler"),
    ):
        cp = cluster.run(*cmd, check=False, env=env, timeout=60)
        line = one_error_line(cp, prog)
        assert cp.returncode == 2, line
        assert f"the script sandbox is incomplete on this host (missing: secrets readable: {kek[0]})" in line, line
        assert "RQP_REQUIRE_SANDBOX=true refuses to run scripts without it" in line
    # without the grant, the same settings start (this machine has every protection)
    p = subprocess.Popen(
        [bin_path("rqp-processor"), "--workers", "1"],
        env={**cluster.env, "RQP_REQUIRE_SANDBOX": "true"},
        stderr=subprocess.PIPE,
        cwd=cluster.root,
        start_new_session=True,
    )
    cluster.procs.append(p)
    first = p.stderr.readline().decode() + p.stderr.readline().decode()
    assert "rqp-processor: sandbox: separate process" in first and "MISSING" not in first, first
    assert "landlock ABI" in first and "seccomp" in first, first
    os.killpg(p.pid, 15)


def test_sandbox_report_is_json_safe():
    """The probe's report is what roles log and check; its shape is stable."""
    from rqp.sandbox import SandboxConfig, probe

    protections = probe(SandboxConfig())
    report = json.loads(json.dumps(protections.report))
    assert report["no_new_privs"] and report["seccomp"] and report["landlock_fs"] and report["rlimits"]
    assert report["missing"] == [] and report["exposed"] == []
