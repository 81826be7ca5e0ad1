"""Fault injection with real processes and servers: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import time

import redis
from harness import Cluster
from redis_server import RedisServer

from rqp.cli.status import _record_text
from rqp.identity import parse_worker_name
from rqp.ledger import WorkloadKeys
from rqp.status import StatusRecord

SLOW_SCRIPT = """
import time

def process(record):
    time.sleep({delay})
    return record["n"] * 3
"""


def _workload(cluster: Cluster, wid: str, n: int, delay: float = 0.0005) -> None:
    data = cluster.write_data(f"{wid}.jsonl", ({"n": i} for i in range(n)))
    script = cluster.write_script(f"{wid}.py", SLOW_SCRIPT.format(delay=delay))
    cluster.pack(wid, data, script)


def _done(cluster: Cluster, wid: str) -> int:
    return cluster.r.bitcount(f"rqp:w:{wid}:done")


def _assert_exactly_once(cluster: Cluster, wid: str, n: int) -> None:
    results = cluster.results(wid)  # raises if any record appears twice
    assert sorted(results) == list(range(n))
    assert all(results[i] == 3 * i for i in range(n))
    st = cluster.status(wid)
    assert (st["state"], st["done"], st["failed"], st["total"]) == ("done", n, 0, n), st


def test_workers_killed_repeatedly(cluster):
    n = 12_000
    _workload(cluster, "kill9", n)
    cluster.env.update(RQP_MAX_ATTEMPTS="10", RQP_CHUNK_SIZE="200", RQP_ADAPTIVE_CHUNKS="false")
    cluster.start_processor(workers=2)
    sched = cluster.start_scheduler("kill9")
    kills = 0
    rng = random.Random(1)
    while kills < 4 and sched.poll() is None:
        target = _done(cluster, "kill9") + 1500
        cluster.wait_for(
            lambda target=target: _done(cluster, "kill9") >= min(target, n) or sched.poll() is not None,
            60,
            "progress between kills",
        )
        pids = [p for p in cluster.worker_pids() if _busy(cluster, p)] or cluster.worker_pids()
        if pids and sched.poll() is None:
            os.kill(rng.choice(pids), signal.SIGKILL)
            kills += 1
    out, _ = sched.communicate(timeout=120)
    assert sched.returncode == 0, out.decode()[-3000:]
    assert kills >= 3
    _assert_exactly_once(cluster, "kill9", n)
    reclaimed = int(cluster.r.hget("rqp:w:kill9:meta", "reclaimed") or 0)
    assert reclaimed >= 1, "no chunk was ever re-run: the kills did not hit work in progress"


HANG_UNTIL_GATE_OPENS = """
import os, time

def process(record):
    # the script can read the gate (a read-only path the test grants) but write nothing outside
    # its sandbox: record 7 hangs until the test opens the gate
    while record["n"] == 7 and not os.path.exists({gate!r}):
        time.sleep(0.05)
    return record["n"] * 3
"""


def _children(pid: int, command: str = "") -> list[int]:
    """Children of ``pid`` whose command line contains ``command``."""
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", command or "."], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_dead_workers_chunk_is_rerun_without_waiting_for_its_lease(cluster):
    """A worker killed mid-chunk (its script host hanging on a record): its supervisor ends the
    chunk's lease at once, so the chunk is re-run within seconds although the lease is 600 s, and
    the script host dies with its worker."""
    n = 50
    data = cluster.write_data("deadw.jsonl", ({"n": i} for i in range(n)))
    gate = cluster.root / "gate"
    gate.mkdir()
    cluster.pack("deadw", data, cluster.write_script("deadw.py", HANG_UNTIL_GATE_OPENS.format(gate=str(gate / "open"))))
    cluster.env.update(
        RQP_LEASE_SECONDS="600",
        RQP_CHUNK_SIZE="10",
        RQP_ADAPTIVE_CHUNKS="false",
        RQP_MAX_ATTEMPTS="3",
        RQP_SANDBOX_READ_PATHS=str(gate),
    )
    processor = cluster.start_processor(workers=1)
    sched = cluster.start_scheduler("deadw")
    # (the supervisor's other children are its short-lived sandbox probe)
    cluster.wait_for(lambda: len(_children(processor.pid, "rqp_processor.worker")) == 1, 60, "the worker to start")
    [pid] = _children(processor.pid, "rqp_processor.worker")
    held = f"rqp:held:{socket.gethostname()}:{pid}"
    cluster.wait_for(
        lambda: cluster.r.get(held) == b"rqp-deadw-c00000000-0", 60, "the worker to take the chunk with record 7"
    )
    # the chunk's script host (the worker's next spare starts only once it is idle again)
    cluster.wait_for(lambda: len(_children(pid, "_host.py")) >= 1, 60, "the chunk's script host to start")
    hosts = _children(pid, "_host.py")
    lease = cluster.r.zscore("rqp:w:deadw:pending", "rqp-deadw-c00000000-0")
    assert lease is not None and lease > time.time() + 500
    os.kill(pid, signal.SIGKILL)
    cluster.wait_for(lambda: not any(map(_alive, hosts)), 10, "the script hosts to die with their worker")
    (gate / "open").touch()
    try:
        out, _ = sched.communicate(timeout=60)
    except Exception:
        raise AssertionError(
            f"the killed worker's chunk was not re-run within 60 s (lease 600 s)\n{cluster.logs()}"
        ) from None
    assert sched.returncode == 0, out.decode()[-3000:]
    _assert_exactly_once(cluster, "deadw", n)
    assert int(cluster.r.hget("rqp:w:deadw:meta", "reclaimed")) == 1
    assert "died holding rqp-deadw-c00000000-0" in cluster.logs()
    assert cluster.r.get(f"rqp:held:{socket.gethostname()}:{pid}") is None


def _busy(cluster: Cluster, pid: int) -> bool:
    """Whether the worker with this pid holds a lease right now (its status is busy in RQ)."""
    for key in cluster.r.smembers("rq:workers"):
        parsed = parse_worker_name(key.decode().rsplit(":", 1)[-1])
        if parsed is not None and parsed[1] == pid:
            return cluster.r.hget(key, "state") == b"busy"
    return False


def test_redis_killed_and_restarted_with_aof(tmp_path, kek):
    server = RedisServer(appendonly=True).start()
    cluster = Cluster(
        tmp_path / "c",
        server.url,
        kek[0],
        extra_env={"RQP_MAX_ATTEMPTS": "10", "RQP_CHUNK_SIZE": "200", "RQP_ADAPTIVE_CHUNKS": "false"},
    )
    try:
        n = 10_000
        _workload(cluster, "aof", n, delay=0.0005)
        cluster.start_processor(workers=2)
        sched = cluster.start_scheduler("aof")
        cluster.wait_for(lambda: _done(cluster, "aof") >= 2000, 60, "first results")
        server.stop(kill=True)  # SIGKILL: only what the AOF already holds survives
        server.start()
        cluster.r = redis.Redis.from_url(server.url)
        out, _ = sched.communicate(timeout=180)
        assert sched.returncode == 0, out.decode()[-3000:] + cluster.logs()
        _assert_exactly_once(cluster, "aof", n)
    finally:
        cluster.stop()
        server.stop()


def test_storage_unavailable_then_back(cluster):
    n = 4000
    _workload(cluster, "outage", n, delay=0.001)
    blobs = cluster.root / "blobs"
    cluster.env.update(RQP_CHUNK_SIZE="100", RQP_ADAPTIVE_CHUNKS="false", RQP_LOG_LEVEL="WARNING")
    cluster.start_processor(workers=2)
    sched = cluster.start_scheduler("outage")
    cluster.wait_for(lambda: _done(cluster, "outage") >= 500, 60, "first results")
    away = cluster.root / "blobs.away"
    os.rename(blobs, away)
    blobs.write_text("the blob store is down")  # every read and write now fails
    try:
        cluster.wait_for(lambda: "unavailable" in cluster.logs(), 60, "processors to notice the outage")
        stalled_at = _done(cluster, "outage")
        # while storage is down no chunk can commit: the workload stalls, it does not fail
        cluster.wait_for(lambda: cluster.logs().count("unavailable") >= 4, 60, "repeated retries")
        assert _done(cluster, "outage") - stalled_at <= 200  # at most the chunks already past their write
        assert sched.poll() is None
    finally:
        blobs.unlink()
        os.rename(away, blobs)
    out, _ = sched.communicate(timeout=180)
    assert sched.returncode == 0, out.decode()[-3000:]
    _assert_exactly_once(cluster, "outage", n)


def test_bad_records_fail_alone_with_their_reasons(cluster):
    lines = [json.dumps({"n": i}) for i in range(100)]
    lines[10] = '{"n": 10, oops'
    data = cluster.write_data("bad.jsonl", ("\n".join(lines) + "\n").encode())
    script = cluster.write_script(
        "bad.py",
        "def process(r):\n    if r['n'] == 20:\n        raise KeyError('no such account')\n    return r['n'] * 3\n",
    )
    cluster.pack("badrecs", data, script)
    cluster.env.update(RQP_CHUNK_SIZE="10", RQP_ADAPTIVE_CHUNKS="false", RQP_MAX_ATTEMPTS="2")
    sched = cluster.start_scheduler("badrecs")
    cluster.wait_for(lambda: cluster.r.hget("rqp:w:badrecs:meta", "total") == b"100", 30, "all records queued")
    # an attacker (or a bad disk) flips one bit of the ciphertext of chunk 3 (records 30-39: one
    # sealed value, rqp.chunk_records): that chunk's records fail with one line, the rest complete
    chunk = WorkloadKeys("badrecs").chunk("c00000003")
    value = bytearray(cluster.r.get(chunk))
    value[-20] ^= 0x01
    cluster.r.set(chunk, bytes(value))
    cluster.start_processor(workers=2)
    out, _ = sched.communicate(timeout=120)
    assert sched.returncode == 1, out.decode()
    failures = cluster.failures("badrecs")
    tampered = set(range(30, 40))
    assert set(failures) == {10, 20} | tampered
    assert failures[10]["error"].startswith("malformed record at line 11: not valid JSON"), failures[10]
    assert (
        failures[20]["error"].startswith("process() raised KeyError: 'no such account'")
        and failures[20]["attempts"] == 2
    )
    for rid in tampered:
        assert (
            "the sealed records of chunk c00000003 of workload badrecs failed authentication" in failures[rid]["error"]
        )
    results = cluster.results("badrecs")
    assert sorted(results) == [i for i in range(100) if i not in {10, 20} | tampered]


def test_sigterm_to_processor_mid_chunk(cluster):
    n = 400
    _workload(cluster, "sigterm", n, delay=0.02)  # 20 records per chunk = 0.4 s per chunk
    cluster.env.update(RQP_CHUNK_SIZE="20", RQP_ADAPTIVE_CHUNKS="false")
    first = cluster.start_processor(workers=2)
    sched = cluster.start_scheduler("sigterm")
    cluster.wait_for(
        lambda: int(cluster.r.hget("rqp:w:sigterm:n", "processing") or 0) > 0 and _done(cluster, "sigterm") >= 40,
        60,
        "work in progress",
    )
    t0 = time.monotonic()
    first.send_signal(signal.SIGTERM)  # what 'docker compose stop' or a scale-down does
    assert first.wait(30) == 0
    assert time.monotonic() - t0 < 25  # within the grace period
    assert int(cluster.r.hget("rqp:w:sigterm:n", "processing") or 0) == 0  # chunks finished, not abandoned
    cluster.start_processor(workers=2)
    out, _ = sched.communicate(timeout=120)
    assert sched.returncode == 0, out.decode()
    _assert_exactly_once(cluster, "sigterm", n)
    # a chunk may have been re-queued by the scheduler: RQ moves a job to its intermediate list
    # when dequeuing, and a worker told to stop right then leaves it there; the scheduler finds
    # such jobs (status "queued", in no queue) and re-runs them -- still exactly once, as checked


def test_scheduler_killed_and_restarted(cluster):
    n = 3000
    _workload(cluster, "schedkill", n, delay=0.001)
    cluster.env.update(RQP_CHUNK_SIZE="50", RQP_ADAPTIVE_CHUNKS="false", RQP_WINDOW_CHUNKS="4")
    cluster.start_processor(workers=2)
    sched = cluster.start_scheduler("schedkill")
    cluster.wait_for(
        lambda: int(cluster.r.hget("rqp:w:schedkill:meta", "enqueued") or 0) >= 600, 60, "enqueue under way"
    )
    os.killpg(sched.pid, signal.SIGKILL)
    sched.wait()
    enqueued_at_kill = int(cluster.r.hget("rqp:w:schedkill:meta", "enqueued"))
    assert enqueued_at_kill < n
    code, out = cluster.schedule("schedkill", timeout=120)
    assert code == 0, out
    assert "resuming after" in out
    _assert_exactly_once(cluster, "schedkill", n)
    meta = cluster.r.hgetall("rqp:w:schedkill:meta")
    assert int(meta[b"chunks"]) == n // 50  # no chunk was queued twice
    assert int(meta[b"enqueued"]) == n


def test_a_processor_that_cannot_open_the_workload_leaves_its_chunks_to_others(cluster):
    """A processor VM pointed at the wrong blob store hands every chunk back untouched, says why
    where `rqp status` looks, and the processors that can open the workload do all of it: one
    misconfigured VM never fails a workload."""
    from rqp.ledger import Ledger
    from rqp.status import read_progress

    data = cluster.write_data("blind.jsonl", [{"n": i} for i in range(40)])
    script = cluster.write_script("blind.py", "def process(r):\n    return r['n'] + 1\n")
    wid = cluster.pack("blind", data, script)
    elsewhere = cluster.root / "empty-blobs"
    elsewhere.mkdir()
    blind = cluster.start_processor(1, env={"RQP_BLOB_URL": f"file://{elsewhere}"})
    sched = cluster.start_scheduler(wid, env={"RQP_CHUNK_SIZE": "4", "RQP_ADAPTIVE_CHUNKS": "false"})
    led = Ledger(cluster.r, wid)
    cluster.wait_for(led.blind, 30, "the misconfigured processor to hand a chunk back")
    shown = cluster.rqp("status", wid, "--json", check=False)
    assert shown.returncode == 3, shown.stderr.decode()  # unfinished
    [hint] = [h for h in json.loads(shown.stdout.splitlines()[-1])["hints"] if "cannot open" in h]
    assert f"cannot open this workload (workload {wid} not found in file://{elsewhere}" in hint, hint
    cluster.start_processor(2)
    out, _ = sched.communicate(timeout=120)
    assert sched.returncode == 0, out.decode()
    assert cluster.results(wid) == {i: i + 1 for i in range(40)}
    assert cluster.failures(wid) == {}
    [(_worker, entry)] = led.blind().items()
    assert (
        entry["reason"]
        == f"workload {wid} not found in file://{elsewhere}; pack it with 'rqp pack' or check RQP_BLOB_URL"
    )
    p = read_progress(cluster.r, wid)
    assert (p.state, p.done, p.failed) == ("done", 40, 0)
    os.killpg(blind.pid, signal.SIGTERM)
    blind.wait(30)
    log = (cluster.root / "processor-0.log").read_text()
    assert log.count(f"cannot open workload {wid}, its chunks are left for other processors") == 1, log


def test_a_chunk_whose_result_part_cannot_be_written_fails_with_that_reason(cluster):
    """The processor's own failure, read back through RQ's public API whatever RQ major is
    installed, is the reason `rqp results --failed` gives."""
    data = cluster.write_data("unwritable.jsonl", [{"n": i} for i in range(3)])
    script = cluster.write_script("unwritable.py", "def process(r):\n    return r\n")
    wid = cluster.pack("unwritable", data, script)
    (cluster.root / "blobs" / "workloads" / wid / "parts").write_text("a file where the parts directory goes")
    cluster.start_processor(1, env={"RQP_STORAGE_RETRY_SECONDS": "0"})
    code, out = cluster.schedule(wid, env={"RQP_MAX_ATTEMPTS": "1"})
    assert code == 1, out
    (cluster.root / "blobs" / "workloads" / wid / "parts").unlink()  # so the summary can be read back
    failures = cluster.failures(wid)
    assert sorted(failures) == [0, 1, 2], out
    assert re.match(
        rf"chunk c00000000 was re-run 1 times: cannot write blob workloads/{wid}/parts/c00000000-0-[0-9a-f]{{16}}\.part",
        failures[0]["error"],
    ), failures[0]["error"]


FAIL_3_HANG_7 = """
import os, time
from rqp import PermanentError

def process(record):
    if record["n"] == 3:
        raise PermanentError("record 3 is wrong")
    while record["n"] == 7 and not os.path.exists({gate!r}):
        time.sleep(0.05)
    return record["n"] * 3
"""


def test_a_rerun_after_a_lost_worker_is_not_an_attempt(cluster):
    """Issue #24 item 26: the chunk of a killed worker is re-run, but its records did not fail:
    the one that then fails permanently shows attempts 1 (its status says apart that its chunk
    was re-run after a lost worker), and the chunk's successful records show attempts 1 too."""
    n = 20
    data = cluster.write_data("lostw.jsonl", ({"n": i} for i in range(n)))
    gate = cluster.root / "gate"
    gate.mkdir()
    cluster.pack("lostw", data, cluster.write_script("lostw.py", FAIL_3_HANG_7.format(gate=str(gate / "open"))))
    cluster.env.update(
        RQP_LEASE_SECONDS="600",
        RQP_CHUNK_SIZE="10",
        RQP_ADAPTIVE_CHUNKS="false",
        RQP_MAX_ATTEMPTS="3",
        RQP_SANDBOX_READ_PATHS=str(gate),
    )
    processor = cluster.start_processor(workers=1)
    sched = cluster.start_scheduler("lostw")
    cluster.wait_for(lambda: len(_children(processor.pid, "rqp_processor.worker")) == 1, 60, "the worker to start")
    [pid] = _children(processor.pid, "rqp_processor.worker")
    cluster.wait_for(
        lambda: cluster.r.get(f"rqp:held:{socket.gethostname()}:{pid}") == b"rqp-lostw-c00000000-0",
        60,
        "the worker to take the chunk with records 3 and 7",
    )
    os.kill(pid, signal.SIGKILL)  # what the OOM killer or a VM going away does
    (gate / "open").touch()
    out, _ = sched.communicate(timeout=120)
    assert sched.returncode == 1, out.decode()[-3000:]  # record 3 failed for good
    assert int(cluster.r.hget("rqp:w:lostw:meta", "reclaimed")) == 1
    failures = cluster.failures("lostw")
    assert list(failures) == [3] and failures[3]["attempts"] == 1, failures
    shown = json.loads(cluster.rqp("status", "lostw", "--record", "3").stdout)
    assert (shown["state"], shown["attempts"], shown["reruns"]) == ("failed", 1, 1), shown
    done = json.loads(cluster.rqp("status", "lostw", "--record", "5").stdout)
    assert (done["state"], done["attempts"]) == ("done", 1), done
    # what a person reads at a terminal
    text = "\n".join(_record_text(StatusRecord.from_json(json.dumps(shown).encode())))
    assert "record 3: failed (attempt 1)" in text and "re-runs   1 after a lost worker (not attempts)" in text, text
    assert "re-run 1 after a lost worker; no attempt spent" in out.decode()
