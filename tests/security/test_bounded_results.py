"""Results cannot kill workers (issue 23, item 4): a script returning 30 MB per record, against
the real processor in a memory-limited cgroup where the kernel allows one, kills no worker and
fails only its own oversized records; a hostile script host announcing a 4 GiB frame fails its
record without the role allocating it."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from rqp.sandbox import OK, TOO_LARGE, SandboxConfig, ScriptPool
from rqp.sandbox import _protocol as P

from .conftest import wait_until

#: the issue's cgroup: 4 workers were OOM-killed in it before results were bounded
CGROUP_BYTES = 900 << 20
MIB = 1 << 20


class MemoryCgroup:
    """A memory cgroup of its own (v2 ``memory.max``, else v1 ``memory.limit_in_bytes``) where
    this process may make one (as root); ``None`` from ``make`` where it cannot."""

    def __init__(self, path: Path, v2: bool) -> None:
        self.path = path
        self.v2 = v2

    @classmethod
    def make(cls, limit: int) -> MemoryCgroup | None:
        v2_root, v1_root = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")
        for root, v2, knob in ((v2_root, True, "memory.max"), (v1_root, False, "memory.limit_in_bytes")):
            if v2 and not (root / "cgroup.controllers").exists():
                continue
            path = root / f"rqp-test-{os.getpid()}"
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / knob).write_text(str(limit))
            except OSError:
                path.rmdir()
                continue
            return cls(path, v2)
        return None

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def holds(self, pid: int) -> bool:
        return any(line.endswith(":/" + self.path.name) for line in Path(f"/proc/{pid}/cgroup").read_text().split())

    def oom_kills(self) -> int:
        text = (self.path / ("memory.events" if self.v2 else "memory.oom_control")).read_text()
        return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("oom_kill ")), 0)

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_30_mb_results_for_every_record_kill_no_worker_and_fail_only_the_oversized_ones(cluster):
    """16 records in one chunk, each returning 30 MB (12 under a 32 MiB RQP_MAX_RESULT_BYTES:
    360 MB of results for one part; 4 of 40 MB, over it). The worker streams the results into
    its part, so its peak RSS stays far below the chunk's results; nothing is OOM-killed."""
    n, under, over = 16, 30_000_000, 40_000_000
    limit = 32 * MIB
    cluster.env.update(
        RQP_MAX_RESULT_BYTES=str(limit),
        RQP_CHUNK_SIZE=str(n),
        RQP_ADAPTIVE_CHUNKS="false",
        RQP_MAX_ATTEMPTS="2",
        RQP_RECORD_TIMEOUT="120",
    )
    script = f"def process(r):\n    return 'x' * ({over} if r['n'] % 4 == 3 else {under})\n"
    cluster.pack(
        "fat", cluster.write_data("fat.jsonl", [{"n": i} for i in range(n)]), cluster.write_script("fat.py", script)
    )
    cgroup = MemoryCgroup.make(CGROUP_BYTES)
    try:
        processor = cluster.start_processor(workers=1)
        if cgroup is not None:
            cgroup.add(processor.pid)  # before it starts its worker (its interpreter is still starting)
        [worker] = wait_until(cluster.worker_pids, what="the processor's worker")
        if cgroup is not None:
            assert cgroup.holds(worker), "the worker started outside the test's memory cgroup"
        code, out = cluster.schedule("fat", timeout=600)
        assert code == 1, out  # its oversized records failed; the scheduler reports that
        assert cluster.worker_pids() == [worker] and processor.poll() is None  # no worker died or was replaced
        peak = _peak_rss(worker)
        if cgroup is not None:
            assert cgroup.oom_kills() == 0
    finally:
        cluster.stop()
        if cgroup is not None:
            cgroup.remove()
    results_in_chunk = (n - n // 4) * under
    # a few frames of one result, the part's memory budget and the interpreter, never the chunk
    assert peak < 320 * MIB, f"worker peak RSS {peak // MIB} MiB for {results_in_chunk // MIB} MiB of results"
    failures = cluster.failures("fat")
    assert set(failures) == {i for i in range(n) if i % 4 == 3}
    for i, doc in failures.items():
        assert doc["error"].startswith(
            f"result of record {i} is {over + 2} bytes, over RQP_MAX_RESULT_BYTES ({limit}); "
        ), doc
        assert doc["attempts"] == 1, doc  # never retried: it would only repeat
    st = cluster.status("fat")
    assert (st["done"], st["failed"]) == (n - n // 4, n // 4), st


HOSTILE = (
    "import os, time\n\n"
    "def process(r):\n"
    "    if r == 'big':\n"
    "        # a RESULTS frame header announcing 4 GiB, into every descriptor that takes it\n"
    "        for fd in range(3, 64):\n"
    "            try:\n"
    "                os.write(fd, b'\\x0d\\xff\\xff\\xff\\xff')\n"
    "            except OSError:\n"
    "                pass\n"
    "        time.sleep(1)\n"
    "    return r\n"
)


def test_a_hostile_host_announcing_a_4_gib_frame_fails_its_record_without_allocating_it():
    pool = ScriptPool(SandboxConfig(record_timeout=10, memory_mb=512), warm=False)
    tracemalloc.start()
    try:
        got = pool.run("w1", HOSTILE.encode, [json.dumps(r).encode() for r in ("a", "big", "b")])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        pool.close()
    assert got[0] == (OK, b'"a"') and got[2] == (OK, b'"b"')
    kind, message = got[1]
    assert kind == TOO_LARGE
    assert message.decode().startswith(f"result is {0xFFFFFFFF} bytes, over RQP_MAX_RESULT_BYTES ({16 * MIB}); ")
    assert peak < 8 * MIB, f"the role allocated {peak // MIB} MiB for a frame it refused"


def test_the_frame_reader_refuses_an_oversized_header_before_its_body_and_keeps_the_frames_before():
    buf = P.FrameBuffer()
    buf.feed(P.frame(P.BATCH_END) + P.HEADER.pack(P.RESULTS, 0xFFFFFFFF) + b"x" * 100)
    assert buf.frames(1 << 20) == [(P.BATCH_END, b"")]
    with pytest.raises(P.FrameTooLarge) as err:
        buf.frames(1 << 20)
    assert (err.value.kind, err.value.size) == (P.RESULTS, 0xFFFFFFFF)
    assert buf.pending == P.HEADER.size + 100  # nothing was read past the header


def test_an_honest_host_never_sends_a_frame_over_the_limit_it_is_held_to():
    """Results just under the limit, many small ones between them: every frame the host sends
    fits ``results_frame_limit`` (the role would refuse it otherwise) and all are delivered."""
    limit = 64 << 10
    src = f"def process(r):\n    return 'y' * ({limit} - 2) if r % 50 == 0 else r\n"
    pool = ScriptPool(SandboxConfig(record_timeout=10, memory_mb=512, max_result_bytes=limit), warm=False)
    try:
        got = pool.run("w1", src.encode, [b"%d" % i for i in range(300)])
    finally:
        pool.close()
    assert all(k == OK for k, _ in got)
    assert got[50][1] == b'"' + b"y" * (limit - 2) + b'"' and got[51][1] == b"51"


def test_the_limit_holds_with_the_sandbox_off_too():
    """``RQP_SANDBOX=false`` runs the same runner inside the role: the same refusal, the same reason."""
    src = "def process(r):\n    return 'é' * r\n"  # escaped as \\u00e9: 6 bytes a character
    pool = ScriptPool(SandboxConfig(enabled=False, max_result_bytes=4096), warm=False)
    try:
        got = pool.run("w1", src.encode, [b"10", b"700"])
    finally:
        pool.close()
    assert got[0] == (OK, b'"' + b"\\u00e9" * 10 + b'"')
    assert got[1][0] == TOO_LARGE
    assert got[1][1].decode().startswith("result is 4202 bytes, over RQP_MAX_RESULT_BYTES (4096); ")
