"""No plaintext at rest: after (and during) a full workload through the real programs, the data,
the script and the results appear in the clear nowhere an intruder could look -- not in Redis
(every command sent to it, every key of every type), not in the blob store, not in the queue
messages, not in any file the run wrote (its directory, its TMPDIR, /tmp) -- and a crashing
worker does not write its memory to disk."""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import redis
from harness import bin_path
from rq import Queue, Worker

from rqp.hardening import disable_core_dumps

from .conftest import QUEUE, wait_until

MAX_SCAN_BYTES = 64 << 20


# --------------------------------------------------------------------------- finding markers
def _encodings(marker: bytes) -> list[bytes]:
    """The marker itself and its base64 forms at each of the three alignments (an encoding is not
    encryption: a value stored base64'd in the clear must be caught too)."""
    forms = [marker]
    for shift in range(3):
        enc = base64.b64encode(b"\0" * shift + marker)
        lead = -(-shift * 4 // 3)  # characters that depend on the padding bytes
        core = enc[lead + (1 if shift else 0) : -4]
        if len(core) >= 12:
            forms.append(core)
    return forms


class Markers:
    def __init__(self, **markers: str) -> None:
        self.markers = {name: value.encode() for name, value in markers.items()}
        self.forms = {name: _encodings(value) for name, value in self.markers.items()}

    def found(self, raw: bytes) -> list[str]:
        """Names of the markers in ``raw``, also looking inside zlib-compressed content."""
        views = [raw]
        if raw[:1] == b"\x78":
            try:
                views.append(zlib.decompress(raw))
            except zlib.error:
                pass
        return sorted({name for name, forms in self.forms.items() for v in views for f in forms if f in v})


def redis_values(r: redis.Redis) -> list[tuple[str, bytes]]:
    """Every key of every type, read value by value, plus its DUMP serialization."""
    out: list[tuple[str, bytes]] = []
    for key in r.scan_iter(count=1000):
        name = key.decode(errors="replace")
        out.append((f"key name {name}", key))
        kind = r.type(key).decode()
        if kind == "string":
            out.append((name, r.get(key) or b""))
        elif kind == "hash":
            for f, v in r.hgetall(key).items():
                out.append((f"{name}[{f!r}]", f + b"\0" + v))
        elif kind == "list":
            out += [(f"{name}[{i}]", v) for i, v in enumerate(r.lrange(key, 0, -1))]
        elif kind == "set":
            out += [(name, v) for v in r.smembers(key)]
        elif kind == "zset":
            out += [(name, m) for m, _s in r.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for mid, fields in r.xrange(key):
                for f, v in fields.items():
                    out.append((f"{name}[{mid.decode()}][{f!r}]", f + b"\0" + v))
        else:
            raise AssertionError(f"key {name} has type {kind}, which this scan does not read")
        dump = r.dump(key)
        if dump is not None:
            out.append((f"DUMP {name}", dump))
    return out


def files_under(root: Path, since: float | None = None, skip: set[Path] = frozenset()) -> list[Path]:
    out = []
    for dirpath, _dirs, files in os.walk(root, onerror=lambda e: None):
        for f in files:
            p = Path(dirpath, f)
            if p in skip:
                continue
            try:
                st = p.lstat()
            except OSError:
                continue
            if not p.is_file() or p.is_symlink() or st.st_size > MAX_SCAN_BYTES:
                continue
            if since is not None and max(st.st_mtime, st.st_ctime) < since:
                continue
            out.append(p)
    return out


class Monitor(threading.Thread):
    """Records every command the Redis server executes (MONITOR), Lua's calls included."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.sendall(b"MONITOR\r\n")
        first = self.sock.recv(5)
        assert first.startswith(b"+OK"), first
        self.sock.settimeout(0.2)
        self.buf = bytearray(first)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            self.buf += chunk

    def stop(self) -> bytes:
        self._halt.set()
        self.join(5)
        self.sock.close()
        return bytes(self.buf)


SCRIPT = """
# {script_marker}: this comment and the constant below exist only in the script's plaintext
SCRIPT_SECRET = "{script_marker}"

def process(record):
    if record["id"] == 13:
        raise ValueError("cannot process " + record["secret"])  # an error message carrying data
    return {{"echo": record["secret"], "tag": "{result_marker}", "len": len(SCRIPT_SECRET)}}
"""


def test_no_plaintext_at_rest_after_a_full_workload(cluster, tmp_path):
    token = secrets.token_hex(8)
    marks = Markers(data=f"RQPDATA{token}", script=f"RQPSCRIPT{token}", result=f"RQPRESULT{token}")
    # the scanner works: it finds each marker in the clear and base64'd, and not in random bytes
    for name, m in marks.markers.items():
        assert marks.found(b"..." + m + b"...") == [name]
        for shift in range(3):
            assert name in marks.found(base64.b64encode(os.urandom(shift) + m + b"tail"))
        assert marks.found(zlib.compress(b"{" + m + b"}")) == [name]
    assert marks.found(os.urandom(4096)) == []

    run_tmp = tmp_path / "run-tmp"
    run_tmp.mkdir()
    cluster.env["TMPDIR"] = str(run_tmp)  # every role's temp files would land here
    data = cluster.write_data("data.jsonl", [{"id": i, "secret": f"RQPDATA{token}-{i:04d}"} for i in range(200)])
    script = cluster.write_script(
        "script.py", SCRIPT.format(script_marker=f"RQPSCRIPT{token}", result_marker=f"RQPRESULT{token}")
    )
    inputs = {data, script}
    assert marks.found(data.read_bytes()) == ["data"] and marks.found(script.read_bytes()) == ["result", "script"]

    host, port = (
        cluster.r.connection_pool.connection_kwargs["host"],
        cluster.r.connection_pool.connection_kwargs["port"],
    )
    started = time.time() - 1
    monitor = Monitor(host, port)
    monitor.start()
    try:
        cluster.pack("secretw", data, script)
        cluster.start_processor(workers=2)
        code, sched_out = cluster.schedule("secretw", timeout=90)
        assert code == 1, sched_out  # record 13 fails (its error message carries data)
        cluster.rqp("events", "--peek", "--max", "5")  # a consumer reading the queue leaves it as it was
    finally:
        traffic = monitor.stop()
    cluster.stop()  # every role has exited: what remains is what is at rest

    # the markers really went through rqp (so their absence below means something)
    results = cluster.results("secretw")
    assert len(results) == 199 and results[0] == {
        "echo": f"RQPDATA{token}-0000",
        "tag": f"RQPRESULT{token}",
        "len": len(f"RQPSCRIPT{token}"),
    }
    assert f"cannot process RQPDATA{token}-0013" in cluster.failures("secretw")[13]["error"]
    assert len(traffic) > 10_000, "MONITOR saw almost nothing; the scan below would be meaningless"

    leaks: list[str] = []
    # 1. every command any role sent to Redis during the run, in order (transient values too)
    for line in traffic.split(b"\n"):
        if found := marks.found(line):
            leaks.append(f"Redis command {found}: {line[:120]!r}")
    # 2. every key left in Redis, every type, and its DUMP
    r = redis.Redis(host=host, port=port)
    values = redis_values(r)
    assert any(name.startswith("rqp:mq:") for name, _ in values), "no queue stream found to scan"
    assert any(name.startswith("rqp:w:secretw:") for name, _ in values)
    for where, raw in values:
        if found := marks.found(raw):
            leaks.append(f"Redis {where}: {found}")
    # 3. queue messages (the status and events streams), explicitly
    streams = [k for k in r.scan_iter("rqp:mq:*")]
    messages = [fields for s in streams for _mid, fields in r.xrange(s)]
    assert len(messages) >= 3
    for fields in messages:
        if found := marks.found(b"".join(fields.values())):
            leaks.append(f"queue message: {found}")
    r.close()
    # 4. every file the run left: blob store, logs, the run's directory, its TMPDIR
    run_files = files_under(cluster.root, skip=inputs)
    assert any(p.name == "results.enc" for p in run_files) and any(p.name == "data.enc" for p in run_files)
    for p in run_files:
        if found := marks.found(p.read_bytes()):
            leaks.append(f"file {p}: {found}")
    # 5. no temp files at all, and nothing new in /tmp carries a marker
    assert files_under(run_tmp) == [], f"roles wrote temp files: {files_under(run_tmp)}"
    for p in files_under(Path("/tmp"), since=started, skip=inputs):
        try:
            raw = p.read_bytes()
        except OSError:
            continue
        if found := marks.found(raw):
            leaks.append(f"file {p}: {found}")
    # 6. what the scheduler printed (logs end up on disk too)
    if found := marks.found(sched_out.encode()):
        leaks.append(f"scheduler output: {found}")
    assert leaks == [], "plaintext at rest:\n" + "\n".join(leaks)


# --------------------------------------------------------------------------- core dumps
CRASH = r"""
import os, resource, signal, sys
secret = "{marker}" * 4          # stands for a data key and decrypted records in memory
if sys.argv[1] == "hardened":
    from rqp.hardening import disable_core_dumps
    h = disable_core_dumps()
    assert h.complete, h
else:
    # what any code in the process (a user script) may do without hardening
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
os.kill(os.getpid(), signal.SIGSEGV)
"""


def _core_files(d: Path) -> list[Path]:
    return [p for p in d.iterdir() if p.name.startswith("core")]


def test_a_crashing_hardened_process_writes_no_core_dump(tmp_path):
    marker = f"RQPCORE{secrets.token_hex(6)}"
    src = CRASH.format(marker=marker)
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    plain_dir, hard_dir = tmp_path / "plain", tmp_path / "hardened"
    plain_dir.mkdir()
    hard_dir.mkdir()
    try:
        plain = subprocess.run([sys.executable, "-c", src, "plain"], cwd=plain_dir, capture_output=True, timeout=60)
        assert plain.returncode == -signal.SIGSEGV, plain.stderr
        if not pattern.startswith("|") and "/" not in pattern:
            # control: on this machine a crash writes the process's memory, secrets included, to its cwd
            cores = _core_files(plain_dir)
            assert cores, f"control: no core dump written with core_pattern {pattern!r}"
            assert marker.encode() in cores[0].read_bytes()
        hardened = subprocess.run(
            [sys.executable, "-c", src, "hardened"], cwd=hard_dir, capture_output=True, timeout=60
        )
        assert hardened.returncode == -signal.SIGSEGV, hardened.stderr
        assert _core_files(hard_dir) == []
    finally:
        for d in (plain_dir, hard_dir):
            for p in _core_files(d):
                p.unlink()


def test_disable_core_dumps_in_this_process_shape():
    """The function's contract, checked in a child so this test process is left as it was."""
    code = (
        "from rqp.hardening import disable_core_dumps, core_limit, is_dumpable\n"
        "h = disable_core_dumps()\n"
        "print(h.core_limit_zero, h.not_dumpable, h.problems, core_limit(), is_dumpable())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert out == "True True () (0, 0) False", out
    assert disable_core_dumps.__doc__


def _core_limit_of(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = re.split(r"\s{2,}", line.strip())[1:3]
            return soft, hard
    raise AssertionError(f"no core limit in /proc/{pid}/limits")


def test_role_processes_run_with_core_dumps_disabled(cluster):
    """rqp-processor (supervisor and workers) and rqp-scheduler call the hardening at start:
    RLIMIT_CORE is 0 hard, so not even the user's script can raise it again."""
    proc = cluster.start_processor(workers=1)
    q = Queue(QUEUE, connection=cluster.r)
    wait_until(lambda: Worker.count(connection=cluster.r, queue=q) >= 1, 60, "the worker to register", cluster.logs)
    log = cluster.root / "scheduler.log"
    with open(log, "wb") as fh:  # the child keeps its own copy of the descriptor
        sched = subprocess.Popen(
            [bin_path("rqp-scheduler"), "serve"],
            env=cluster.env,
            cwd=cluster.root,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cluster.procs.append(sched)
    wait_until(lambda: b"serving:" in log.read_bytes() or sched.poll() is not None, 60, "the scheduler to serve")
    assert sched.poll() is None, log.read_text()
    workers = cluster.worker_pids()
    assert workers
    limits = {
        f"rqp-processor {proc.pid}": _core_limit_of(proc.pid),
        f"rqp-scheduler {sched.pid}": _core_limit_of(sched.pid),
    }
    limits.update({f"worker {pid}": _core_limit_of(pid) for pid in workers})
    assert all(v == ("0", "0") for v in limits.values()), limits
