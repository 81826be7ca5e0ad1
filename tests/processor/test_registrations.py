"""Workers restarted after a crash, a container kill or a reboot (issue #24 item 25): same host
name, same pids. Their RQ names carry when they started, so they never collide with the dead
ones' registrations; the supervisor removes those registrations; and a chunk an earlier process
with the same pid held is never blamed on the new worker."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

from rq.worker import Worker

from rqp.identity import parse_worker_name, start_token, worker_name
from rqp.ledger import WorkloadKeys, held_key
from rqp_processor.cli import release_previous_holder
from rqp_processor.registrations import dead_registrations

HOST = socket.gethostname()


def test_a_worker_name_is_unique_per_start_and_says_whether_its_process_lives():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        name = worker_name(child.pid)
        assert parse_worker_name(name) == (HOST, child.pid, start_token(child.pid))
        assert start_token(child.pid) != start_token()  # two processes, two starts
    finally:
        child.communicate(b"")
    assert start_token(child.pid) is None  # gone: its name can no longer match a live process
    assert parse_worker_name("rqp-my-vm-7") == ("my-vm", 7, None)  # a name from before tokens
    assert parse_worker_name("rqp-my-vm-7-s1a2b3c") == ("my-vm", 7, "s1a2b3c")
    assert parse_worker_name("celery-7") is None


def _register(r, name: str) -> str:
    w = Worker(["rqp"], connection=r, name=name)
    w.hostname = HOST if name.startswith(f"rqp-{HOST}-") else "elsewhere"
    w.register_birth()
    return w.key


def _names(r) -> set[str]:
    return {k.decode().removeprefix(Worker.redis_worker_namespace_prefix) for k in r.smembers("rq:workers")}


def test_the_supervisor_removes_dead_workers_registrations_and_its_restarted_workers_do_not_collide(cluster):
    r = cluster.r
    # what a killed container left: the same pid as a live process here but another start, a
    # name from before start tokens, and a live-looking worker of another host (not ours to judge)
    stale = [f"rqp-{HOST}-{os.getpid()}-sdeadbeef", f"rqp-{HOST}-{os.getpid()}"]
    other = "rqp-othervm-12-s0000abc"
    for name in [*stale, other]:
        _register(r, name)
    assert set(dead_registrations(r)) == set(stale)
    sup = cluster.start_processor(2)
    cluster.wait_for(lambda: len(cluster.worker_pids()) == 2 and len(_names(r)) == 3, 60, "two workers registered")
    names = _names(r)
    assert other in names and not names & set(stale), names
    for name in stale:
        assert not r.exists(Worker.redis_worker_namespace_prefix + name)
    # a worker killed (the OOM killer, kill -9) cannot unregister: its registration goes when the
    # supervisor restarts it, not minutes later when RQ's worker TTL runs out
    victim = cluster.worker_pids()[0]
    [victim_name] = [n for n in names if (p := parse_worker_name(n)) is not None and p[1] == victim]
    os.kill(victim, signal.SIGKILL)
    cluster.wait_for(
        lambda: victim_name not in _names(r) and len(_names(r)) == 3 and victim not in cluster.worker_pids(),
        60,
        "the dead worker's registration to go and its successor to register",
    )
    assert "There exists an active worker" not in cluster.logs()
    assert "died holding" not in cluster.logs()  # it held nothing
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(60) == 0
    assert _names(r) == {other}


def test_a_chunk_an_earlier_process_with_the_same_pid_held_is_ended_and_not_blamed(r, caplog):
    jid = "rqp-w1-c00000003-0"
    pending = WorkloadKeys("w1").pending
    r.zadd(pending, {jid: time.time() + 600})
    r.set(held_key(f"{HOST}:4242"), jid)
    with caplog.at_level(logging.WARNING, logger="rqp.processor"):
        release_previous_holder(r, 4242)
    assert f"an earlier process with pid 4242 on this host died holding {jid}; its lease was ended" in caplog.text
    assert r.get(held_key(f"{HOST}:4242")) is None  # the new worker with pid 4242 starts with a clean slate
    assert r.zscore(pending, jid) <= time.time()  # the scheduler re-runs it now
