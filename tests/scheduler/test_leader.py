"""The leader lease of ``rqp-scheduler serve`` (``rqp_scheduler.leader``): a standby takes over,
and a leader that lost its lease writes nothing -- in process against a real Redis, and with two
real serving schedulers, one paused with SIGSTOP past its lease."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
import redis
from harness import Cluster, bin_path

from rqp_scheduler.cli import EXIT_STEPPED_DOWN
from rqp_scheduler.leader import FENCE, LEASE, READ_ONLY, LeaderLease, LeaderLost


def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return value


def test_a_standby_takes_over_a_lapsed_lease_and_the_old_leader_writes_nothing(r, redis_url):
    a = LeaderLease(r, 0.3, me="host-a:1")
    b = LeaderLease(redis.Redis.from_url(redis_url), 0.3, me="host-b:2")
    assert a.try_take() is None and a.token == "1 host-a:1"
    assert b.try_take() == "1 host-a:1"  # a leads: b waits
    fa = a.fenced()
    fa.set("k", "by-a")
    pipe = fa.pipeline(transaction=False)
    pipe.hset("h", "f", "by-a").incr("n")
    assert pipe.execute() == [1, 1]
    incr = fa.register_script("return redis.call('INCR', KEYS[1])")
    assert incr(keys=["n"]) == 2
    explicit = fa.pipeline(transaction=False)
    explicit.multi()  # a caller's own MULTI, as RQ issues some
    explicit.set("m", "by-a")
    assert explicit.execute() == [True]

    _until(lambda: b.try_take() is None, 5, "the standby to take the lapsed lease")
    assert (b.token, b.former) == ("2 host-b:2", "1 host-a:1")
    with pytest.raises(LeaderLost):
        fa.set("k", "stale")
    with pytest.raises(LeaderLost):
        fa.pipeline().hset("h", "f", "stale").incr("n").execute()
    with pytest.raises(LeaderLost):
        incr(keys=["n"])
    explicit = fa.pipeline()
    explicit.multi()
    explicit.set("m", "stale")
    with pytest.raises(LeaderLost):
        explicit.execute()
    assert r.get("m") == b"by-a"
    assert (r.get("k"), r.hget("h", "f"), r.get("n")) == (b"by-a", b"by-a", b"2")  # nothing of a's landed
    assert a.lost.is_set() and a.renew() is False
    assert fa.get("k") == b"by-a"  # reads still go (the loop stops on ``lost``)
    fb = b.fenced()
    fb.set("k", "by-b")
    assert r.get("k") == b"by-b"


def test_a_write_already_past_its_check_is_discarded_by_redis(r, redis_url):
    """The WATCH: a takeover between the fence check and EXEC voids the transaction."""
    a = LeaderLease(r, 30, me="host-a:1")
    b = LeaderLease(redis.Redis.from_url(redis_url), 30, me="host-b:2")
    assert a.try_take() is None
    pipe = a.fenced().pipeline()
    pipe.watch("k")  # checks the fence (a leads) and watches it
    r.delete(LEASE)  # a's lease lapses...
    assert b.try_take() is None  # ...and b takes over, rewriting the fence
    pipe.multi()
    pipe.set("k", "stale")
    with pytest.raises(redis.WatchError):
        pipe.execute()
    assert r.get("k") is None


def test_a_clean_stop_hands_the_lease_on_at_once(r, redis_url):
    a = LeaderLease(r, 30, me="host-a:1")
    b = LeaderLease(redis.Redis.from_url(redis_url), 30, me="host-b:2")
    assert a.try_take() is None and a.renew()
    assert b.try_take() == "1 host-a:1"
    a.release()
    assert b.try_take() is None and b.generation == 2
    assert r.pttl(LEASE) > 29_000


@pytest.mark.parametrize(
    ("lease", "fence", "generation"),
    [
        (b"\xff\xfe not a lease", None, 1),  # no TTL: not one rqp wrote
        (None, b"junk", 1),
        (None, b"41 somebody", 42),  # generations only grow
        ("hash", "hash", 1),  # another type: deleted
    ],
)
def test_junk_in_the_lease_keys_never_wedges_a_takeover(r, lease, fence, generation):
    for key, value in ((LEASE, lease), (FENCE, fence)):
        if value == "hash":
            r.hset(key, "x", "y")
        elif value is not None:
            r.set(key, value)
    a = LeaderLease(r, 0.5, me="host-a:1")
    _until(lambda: a.try_take() is None, 5, "the takeover")  # junk without a TTL: one lease of life
    assert a.generation == generation
    assert r.get(FENCE) == f"{generation} host-a:1".encode()


def test_a_forged_lease_with_a_ttl_stalls_scheduling_for_that_long_only(r):
    r.set(LEASE, "9 forged", px=300)
    a = LeaderLease(r, 30, me="host-a:1")
    assert a.try_take() == "9 forged"
    _until(lambda: a.try_take() is None, 5, "the forged lease to lapse")
    assert a.generation == 1 and r.get(LEASE) == b"1 host-a:1"


def test_the_new_leader_frees_the_former_leaders_workload_locks(r, redis_url):
    a = LeaderLease(r, 0.2, me="host-a:1")
    assert a.try_take() is None
    for wid, holder in (("W1", "host-a:1"), ("W2", "host-c:3")):  # two running workloads
        r.zadd("rqp:workloads", {wid: time.time()})
        r.hset(f"rqp:w:{wid}:meta", "state", "running")
        r.set(f"rqp:w:{wid}:lock", holder, ex=30)
    b = LeaderLease(redis.Redis.from_url(redis_url), 30, me="host-b:2")
    _until(lambda: b.try_take() is None, 5, "the takeover")
    assert b.release_former_locks(b.fenced()) == 1
    assert not r.exists("rqp:w:W1:lock") and r.get("rqp:w:W2:lock") == b"host-c:3"


# ---------------------------------------------------------------------- two real serving schedulers
SLOW = """
import time

def process(record):
    time.sleep(0.004)
    return record["n"] * 7
"""


class Monitor:
    """Every command Redis executes, with the client that sent it (MONITOR, in a thread)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=0.5)
        self.lines: list[dict] = []
        self.stop = threading.Event()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.started.wait(10)

    def _run(self) -> None:
        with self.client.monitor() as m:
            self.started.set()
            while not self.stop.is_set():
                try:
                    self.lines.append(m.next_command())
                except redis.TimeoutError:
                    continue

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.client.close()


def _serve(cluster: Cluster, name: str, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    log = cluster.root / f"{name}.log"
    with open(log, "wb") as out:
        p = subprocess.Popen(
            [bin_path("rqp-scheduler"), "serve"],
            env={**cluster.env, **env},
            cwd=cluster.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cluster.procs.append(p)
    return p, log


def _leader_pid(r: redis.Redis) -> int | None:
    value = r.get(LEASE)
    return int(value.decode().rsplit(":", 1)[1]) if value else None


#: a transaction's brackets: MONITOR shows the commands inside one as they run, at its EXEC, so a
#: write that ran shows as itself; an EXEC that Redis discarded (the fence's WATCH fired: a write
#: already past its fence check when the leader was paused) shows as MULTI and EXEC alone
_BRACKETS = ("MULTI", "EXEC", "DISCARD")


def _writes_of(lines: list[dict], ports: set[str]) -> list[str]:
    """The commands from ``ports`` that change something, Lua's included (a script's own commands
    follow its EVALSHA in MONITOR's order)."""
    writes, theirs = [], False
    for line in lines:
        name = line["command"].split(" ", 1)[0].strip('"').upper()
        if line["client_type"] == "lua":
            if theirs and name not in READ_ONLY:
                writes.append("lua " + line["command"])
            continue
        theirs = line.get("client_port") in ports
        if theirs and name not in READ_ONLY and name not in ("EVALSHA", "EVAL", *_BRACKETS):
            writes.append(line["command"])
    return writes


def test_a_discarded_transaction_is_no_write_and_one_that_ran_is():
    """MONITOR's view of the two cases ``_writes_of`` must tell apart."""
    mine = {"client_type": "tcp", "client_port": "5"}
    discarded = [{**mine, "command": '"MULTI"'}, {**mine, "command": '"EXEC"'}]
    ran = [{**mine, "command": '"MULTI"'}, {**mine, "command": '"SET" "k" "v"'}, {**mine, "command": '"EXEC"'}]
    assert _writes_of(discarded, {"5"}) == []
    assert _writes_of(ran, {"5"}) == ['"SET" "k" "v"']


def test_a_paused_leader_wakes_up_fenced_out_writes_nothing_and_steps_down(cluster):
    n = 1500
    # the default lease (6 s): the standby must take over within 10 s of the leader's stop
    cluster.env.update(RQP_CHUNK_SIZE="25", RQP_ADAPTIVE_CHUNKS="false")
    data = cluster.write_data("w.jsonl", ({"n": i} for i in range(n)))
    cluster.pack("w", data, cluster.write_script("w.py", SLOW))
    first, first_log = _serve(cluster, "sched-a", {})
    _until(lambda: _leader_pid(cluster.r) == first.pid, 30, "the first scheduler to lead")
    second, second_log = _serve(cluster, "sched-b", {})
    _until(lambda: b"standby" in second_log.read_bytes(), 30, "the second scheduler to stand by")
    cluster.rqp("submit", "w")
    cluster.start_processor(2)
    done = lambda: cluster.r.bitcount("rqp:w:w:done")  # noqa: E731
    _until(lambda: done() > 0, 60, "records to be done under the first scheduler")

    os.kill(first.pid, signal.SIGSTOP)
    paused = time.monotonic()
    ports = {str(c.laddr.port) for c in psutil.Process(first.pid).net_connections(kind="tcp") if c.raddr}
    _until(lambda: _leader_pid(cluster.r) == second.pid, 10, "the standby to take over")
    took_over = time.monotonic() - paused
    print(f"the standby took over {took_over:.1f}s after the leader was paused")
    assert took_over < 10, f"the standby took {took_over:.1f}s"
    at_takeover = done()
    _until(lambda: done() > at_takeover, 60, "records done under the new leader")

    monitor = Monitor(cluster.redis_url)
    try:
        os.kill(first.pid, signal.SIGCONT)
        code = first.wait(30)
        monitor_lines = list(monitor.lines)
    finally:
        monitor.close()
    log = first_log.read_text()
    assert code == EXIT_STEPPED_DOWN, log[-3000:]
    assert "steps down" in log
    theirs = [line for line in monitor_lines if line.get("client_port") in ports]
    assert theirs, "the woken scheduler sent nothing at all: the test saw none of its connections"
    assert _writes_of(monitor_lines, ports) == [], "the fenced-out scheduler wrote"

    _until(lambda: done() == n, 120, "the workload to finish under the new leader")
    results = cluster.results("w")
    assert sorted(results) == list(range(n)) and all(v == k * 7 for k, v in results.items())
    status = json.loads(cluster.rqp("status", "w", "--json").stdout)
    assert status["state"] == "done", status


def test_a_fence_of_another_type_makes_the_leader_step_down_not_crash(r):
    a = LeaderLease(r, 30, me="host-a:1")
    assert a.try_take() is None
    r.delete(FENCE)
    r.hset(FENCE, "x", "y")
    with pytest.raises(LeaderLost):
        a.fenced().set("k", "v")
    assert r.get("k") is None and a.lost.is_set()
    # its own lease (a restarted container keeps its name): taken again at once, a new generation
    assert a.try_take() is None and not a.lost.is_set() and a.generation == 2


@pytest.mark.parametrize(
    ("key", "forged", "generation"),
    [
        (FENCE, "99999999999999999999 evil", 1),  # past 2^53: junk, replaced
        (FENCE, "9007199254740991 evil", 1),  # 2^53 - 1: junk too (its successor would not be exact)
        (FENCE, "100000000000000 evil", 100000000000001),  # 10^14 is sane: written as digits, not 1e+14
        (LEASE, "99999999999999999999 host-a:1", 1),  # its own name: taken at once, the junk replaced
    ],
)
def test_a_huge_generation_is_junk_replaced_never_a_crash(r, key, forged, generation, caplog):
    r.set(key, forged)
    a = LeaderLease(r, 30, me="host-a:1")
    with caplog.at_level("INFO", logger="rqp.scheduler"):
        assert a.wait(threading.Event()) is True  # logs "leading as ... (generation N)": no ValueError
    assert a.generation == generation
    assert r.get(FENCE) == r.get(LEASE) == f"{generation} host-a:1".encode()
    assert f"generation {generation}" in caplog.text


@pytest.mark.parametrize("token", ["1e+20 x", "junk", "", "-3 x", "٣ x", "99999999999999999999 x"])
def test_a_generation_that_is_not_sane_digits_reads_as_0(r, token):
    a = LeaderLease(r, 30, me="host-a:1")
    a.token = token
    assert a.generation == 0


def test_a_forged_lease_is_logged_as_lost_with_what_redis_holds_not_as_a_takeover(r, caplog):
    a = LeaderLease(r, 30, me="host-a:1")
    assert a.try_take() is None
    r.set(LEASE, "5 evil:1", px=20_000)
    with caplog.at_level("ERROR", logger="rqp.scheduler"):
        assert a.renew() is False
    assert a.lost.is_set()  # the step-down itself is unchanged
    line = caplog.text
    assert "another scheduler took it over" not in line
    assert "written behind rqp's back" in line and "'5 evil:1'" in line and "'1 host-a:1'" in line
