"""An operator's control of workloads, with the scheduler and processor code in process against
a real Redis: pause and resume lose and re-run nothing, cancel ends in a consolidated workload
that says what never ran, delete --shred leaves nothing readable, every action is audited."""

from __future__ import annotations

import json

import pytest

from rqp import control
from rqp.cli import main as rqp_main
from rqp.errors import WorkloadError
from rqp.ledger import WORKLOADS, Ledger, State
from rqp.summary import read_summary
from rqp.workload import blob_name

N = 40


@pytest.fixture
def proc(world):
    p = world.processor()
    yield p
    p.pool.close()


@pytest.fixture
def cli_env(world, monkeypatch):
    """The ``rqp`` command line pointed at the world's Redis, blobs and keys."""
    for name, value in {
        "RQP_REDIS_URL": world.settings.redis_url,
        "RQP_BLOB_URL": world.settings.blob_url,
        "RQP_ALLOW_INSECURE_REDIS": "true",
        "RQP_KEK_FILE": str(world.settings.kek_file),
        "RQP_TRUSTED_SIGNERS_FILE": str(world.settings.trusted_signers_file),
    }.items():
        monkeypatch.setenv(name, value)


def _started(world, proc, wid: str):
    run = world.run(wid)
    run.step()
    world.work(proc)
    run.step()
    return run


def test_pause_holds_back_the_queued_chunks_and_resume_loses_nothing(world, proc):
    wid = world.pack("pausing", [{"n": i} for i in range(N)])
    run = _started(world, proc, wid)
    led = Ledger(world.r, wid)
    assert world.queued_jobs()
    assert control.pause(world.r, wid, "ops@test") == "paused"
    run.step()
    pending = led.queued()
    assert pending and world.queued_jobs() == []  # taken off the RQ queue, still pending with their specs
    for _ in range(5):
        assert not run.step() and world.work(proc) == 0
    assert led.queued() == pending and led.state() == State.PAUSED
    assert control.resume(world.r, wid, "ops@test") == "running"
    run.step()
    assert sorted(j.id for j in world.queued_jobs()) == sorted(pending)
    world.run_to_end(run, proc)
    s = read_summary(world.store, run.workload)
    assert (s.total, s.done, s.failed, s.cancelled) == (N, N, 0, 0)
    assert [(e["who"], e["what"]) for e in control.audit(world.r)] == [("ops@test", "resume"), ("ops@test", "pause")]


def test_cancel_consolidates_what_was_done_and_counts_what_never_ran(world, proc):
    wid = world.pack("cancelling", [{"n": i} for i in range(N)])
    run = _started(world, proc, wid)
    led = Ledger(world.r, wid)
    done_before = led.snapshot()["done"]
    assert 0 < done_before < N
    assert control.cancel(world.r, wid, "ops@test") == "cancelling"
    for _ in range(10):
        if run.step():
            break
        world.work(proc)
    else:
        raise AssertionError("the cancelled workload did not end")
    assert led.state() == State.CANCELLED and led.queued() == [] and world.queued_jobs() == []
    s = read_summary(world.store, run.workload)
    assert s.done == done_before and s.failed == 0 and s.done + s.cancelled == s.total
    assert world.work(proc) == 0  # nothing left to run
    with pytest.raises(WorkloadError, match=f"workload {wid} is cancelled; only a workload that is running"):
        control.pause(world.r, wid, "ops@test")


def test_control_refuses_what_does_not_apply(world, proc):
    wid = world.pack("finished", [{"n": i} for i in range(4)])
    world.run_to_end(world.run(wid), proc)
    with pytest.raises(WorkloadError, match=f"workload {wid} is done; only a workload that is running or paused"):
        control.cancel(world.r, wid, "ops@test")
    with pytest.raises(WorkloadError, match=f"workload {wid} is done; only a workload that is paused can be resumed"):
        control.resume(world.r, wid, "ops@test")
    with pytest.raises(WorkloadError, match="workload nosuch is not known to Redis"):
        control.pause(world.r, "nosuch", "ops@test")
    with pytest.raises(WorkloadError, match="workload nosuch is not known to Redis"):
        control.retry_failed(world.r, "nosuch", "ops@test")
    assert control.audit(world.r) == []  # refused requests are not recorded as done


def test_delete_shred_overwrites_the_wrapped_key_first_and_leaves_nothing(world, proc):
    wid = world.pack("shredded", [{"n": i} for i in range(8)])
    world.run_to_end(world.run(wid), proc)
    events: list[tuple[str, str]] = []
    store = world.store
    real_put, real_delete = store.put, store.delete
    store.put = lambda name, data: (events.append(("put", name)), real_put(name, data))[1]  # type: ignore[method-assign]
    store.delete = lambda name: (events.append(("delete", name)), real_delete(name))[1]  # type: ignore[method-assign]
    keys, blobs = control.delete(world.r, store, wid, "ops@test", shred=True)
    key = blob_name(wid, "key.json")
    assert events.index(("put", key)) < min(i for i, e in enumerate(events) if e[0] == "delete")
    assert keys > 0 and blobs >= 5
    assert list(store.list(blob_name(wid, ""))) == []
    assert list(world.r.scan_iter(match=f"rqp:w:{wid}:*")) == [] and world.r.zscore(WORKLOADS, wid) is None
    assert control.audit(world.r)[0]["what"] == "delete --shred"


def test_delete_refuses_a_running_workload(world, proc):
    wid = world.pack("busy", [{"n": i} for i in range(N)])
    _started(world, proc, wid)
    with pytest.raises(WorkloadError, match=f"workload {wid} is running; cancel it first"):
        control.delete(world.r, world.store, wid, "ops@test")


def test_the_commands(world, proc, cli_env, capsys):
    wid = world.pack("by-hand", [{"n": i} for i in range(N)])
    _started(world, proc, wid)
    assert rqp_main(["pause", wid]) == 0
    assert rqp_main(["resume", wid]) == 0
    assert rqp_main(["cancel", wid]) == 0
    assert rqp_main(["pause", wid]) == 7
    assert rqp_main(["audit", "--json"]) == 0
    assert rqp_main(["delete", wid]) == 2  # not a terminal: --yes is required
    out, err = capsys.readouterr()
    assert f"workload {wid}: paused: nothing new is queued" in out and f"workload {wid}: cancelling" in out
    assert f"rqp: error: workload {wid} is cancelling; only a workload that is running can be paused" in err
    audit = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [a["what"] for a in audit] == ["cancel", "resume", "pause"]
    assert f"rqp: error: deleting workload {wid} cannot be undone; add --yes to confirm" in err


def test_a_deleted_workload_is_named_as_deleted_not_as_never_packed(world, proc, cli_env, capsys):
    """After `rqp delete`, `rqp results` and `rqp status` say who deleted it and when (from the
    audit log), not "not found: pack it with 'rqp pack'"."""
    wid = world.pack("gone", [{"n": i} for i in range(8)])
    world.run_to_end(world.run(wid), proc)
    assert rqp_main(["delete", wid, "--shred", "--yes"]) == 0
    capsys.readouterr()
    for argv in (["results", wid], ["status", wid], ["status", wid, "--record", "1"]):
        assert rqp_main(argv) == 7, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"rqp: error: workload {wid} was deleted and its data key destroyed (--shred) by "), err
        assert "('rqp audit'); its results and state are gone" in err and "pack it" not in err, err
    # an id nobody ever used still reads as unknown
    assert rqp_main(["results", "never-was"]) == 7
    assert "not found in" in capsys.readouterr().err
