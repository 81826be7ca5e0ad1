"""One workload's bad value never stops the scheduler (issue #22's junk chunk value, #23 item 5):
an exception nobody foresaw fails that workload alone, loudly and once, and the others finish."""

from __future__ import annotations

import pytest
from world import world  # noqa: F401 - fixture

from rqp.errors import IntegrityError
from rqp.ledger import unpack_values
from rqp.status import read_progress
from rqp_scheduler.scheduler import Scheduler


def test_an_unforeseen_exception_fails_its_workload_alone(world, monkeypatch):  # noqa: F811
    bad = world.pack("junky", [{"n": n} for n in range(12)])
    good = world.pack("fine", [{"n": n} for n in range(12)])
    sched = Scheduler(world.settings)
    proc = world.processor()
    try:
        sched.add(bad)
        sched.add(good)

        # a fault nobody foresaw, in one workload's enqueue (its text quotes the data)
        def boom() -> None:
            raise ValueError("record 7 is 'not a number'")

        monkeypatch.setattr(sched.runs[bad].enqueuer, "fill_window", boom)
        world.r.hset(f"rqp:w:{good}:meta", "started_at", "junk")  # and junk a report must survive
        for _ in range(200):
            sched.tick(serve=True)
            world.work(proc)
            if not sched.runs:
                break
        failed = read_progress(world.r, bad)
        assert failed is not None and failed.state == "failed"
        assert "unexpected ValueError" in (failed.error or "") and "other workloads go on" in (failed.error or "")
        assert "not a number" not in (failed.error or "")  # the detail is sealed, never in clear
        done = read_progress(world.r, good)
        assert done is not None and (done.state, done.done) == ("done", 12)
        assert bad in sched.failures and good not in sched.failures
        again = Scheduler(world.settings)
        again.resume_unfinished()  # a restarted scheduler does not meet it again
        assert bad not in again.runs
    finally:
        proc.pool.close()
        sched.hosts.close()


@pytest.fixture
def cli_env_survives(world, monkeypatch):  # noqa: F811
    monkeypatch.setenv("RQP_REDIS_URL", world.settings.redis_url)
    monkeypatch.setenv("RQP_BLOB_URL", world.settings.blob_url)
    monkeypatch.setenv("RQP_ALLOW_INSECURE_REDIS", "true")
    monkeypatch.setenv("RQP_KEK_FILE", str(world.settings.kek_file))


def test_a_packed_value_that_does_not_decode_is_an_integrity_error():
    with pytest.raises(IntegrityError, match="truncated or not rqp's"):
        unpack_values(b"\x00" * 36)


def test_junk_bytes_in_shared_keys_stop_no_workload_and_no_report(world, cli_env_survives):  # noqa: F811
    """Review of #22: one byte that is not UTF-8 in the submissions, the workloads index, the
    outbox index or one workload's plain fields failed every workload, killed ``serve`` or made
    ``rqp list`` print a traceback. Now each is passed over (or fails its own workload) and the
    rest goes on."""
    from rqp.cli import main as rqp_main

    good = world.pack("clean", [{"n": n} for n in range(12)])
    r = world.r
    r.rpush("rqp:submissions", b"\xff\xfe", good)
    r.zadd("rqp:workloads", {b"\xff": 1})
    r.zadd("rqp:outbox:t", {b"\xff": 0})
    r.hset("rqp:w:ghost:meta", mapping={b"state": b"runn\xffing", b"started_at": b"\xfe"})
    sched = Scheduler(world.settings)
    proc = world.processor()
    try:
        for _ in range(200):
            sched.tick(serve=True)
            world.work(proc)
            if good not in sched.runs and good in sched.summaries:
                break
        done = read_progress(world.r, good)
        assert done is not None and (done.state, done.done) == ("done", 12)
        assert r.zscore("rqp:outbox:t", b"\xff") is None  # the junk index member was dropped
        assert rqp_main(["list"]) == 0
        assert rqp_main(["rejected"]) == 0
    finally:
        proc.pool.close()
        sched.hosts.close()
