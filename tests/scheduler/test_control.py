"""An operator's control of workloads, with the scheduler and processor code in process against
a real Redis: pause and resume lose and re-run nothing, cancel ends in a consolidated workload
that says what never ran, delete --shred leaves nothing readable, every action is a signed
request that the audit log shows verified."""

from __future__ import annotations

import json

import pytest

from rqp import control
from rqp.cli import main as rqp_main
from rqp.errors import WorkloadError
from rqp.ledger import WORKLOADS, Head, Ledger, State
from rqp.oplog import read_audit
from rqp.summary import read_summary
from rqp.workload import blob_name

N = 40


@pytest.fixture
def key(operator):
    """The operator key the requests are signed with (trusted: the session's operators file)."""
    return operator.key


def _audit(world, operator) -> list[tuple[str, str, bool]]:
    """(who, what, verified) of the audit log, newest first."""
    return [(e.who, e.what, e.verified) for e in read_audit(world.r, operator.trust, world.trust())]


def _started(world, proc, wid: str):
    run = world.run(wid)
    run.step()
    world.work(proc)
    run.step()
    return run


def test_pause_holds_back_the_queued_chunks_and_resume_loses_nothing(world, proc, key, operator):
    wid = world.pack("pausing", [{"n": i} for i in range(N)])
    run = _started(world, proc, wid)
    led = Ledger(world.r, wid)
    assert world.queued_jobs()
    assert control.pause(world.r, key, wid, "ops@test") == "paused"
    run.step()
    pending = led.queued()
    assert pending and world.queued_jobs() == []  # taken off the RQ queue, still pending with their specs
    for _ in range(5):
        assert not run.step() and world.work(proc) == 0
    assert led.queued() == pending and led.state() == State.PAUSED
    assert control.resume(world.r, key, wid, "ops@test") == "running"
    run.step()
    assert sorted(j.id for j in world.queued_jobs()) == sorted(pending)
    world.run_to_end(run, proc)
    s = read_summary(world.store, run.workload)
    assert (s.total, s.done, s.failed, s.cancelled) == (N, N, 0, 0)
    assert _audit(world, operator) == [("ops@test", "resume", True), ("ops@test", "pause", True)]


def test_cancel_consolidates_what_was_done_and_counts_what_never_ran(world, proc, key):
    wid = world.pack("cancelling", [{"n": i} for i in range(N)])
    run = _started(world, proc, wid)
    led = Ledger(world.r, wid)
    done_before = led.snapshot()["done"]
    assert 0 < done_before < N
    assert control.cancel(world.r, key, wid, "ops@test") == "cancelling"
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
        control.pause(world.r, key, wid, "ops@test")


def test_control_refuses_what_does_not_apply(world, proc, key):
    wid = world.pack("finished", [{"n": i} for i in range(4)])
    world.run_to_end(world.run(wid), proc)
    with pytest.raises(WorkloadError, match=f"workload {wid} is done; only a workload that is running or paused"):
        control.cancel(world.r, key, wid, "ops@test")
    with pytest.raises(WorkloadError, match=f"workload {wid} is done; only a workload that is paused can be resumed"):
        control.resume(world.r, key, wid, "ops@test")
    with pytest.raises(WorkloadError, match="workload nosuch is not known to Redis"):
        control.pause(world.r, key, "nosuch", "ops@test")
    with pytest.raises(WorkloadError, match="workload nosuch is not known to Redis"):
        control.cancel(world.r, key, "nosuch", "ops@test", world.store)
    assert world.r.llen("rqp:audit") == 0  # refused requests are not recorded as done


def test_delete_shred_overwrites_the_wrapped_key_first_and_leaves_nothing(world, proc, key, operator):
    wid = world.pack("shredded", [{"n": i} for i in range(8)])
    world.run_to_end(world.run(wid), proc)
    events: list[tuple[str, str]] = []
    store = world.store
    real_put, real_delete = store.put, store.delete
    store.put = lambda name, data: (events.append(("put", name)), real_put(name, data))[1]  # type: ignore[method-assign]
    store.delete = lambda name: (events.append(("delete", name)), real_delete(name))[1]  # type: ignore[method-assign]
    keys, blobs = control.delete(world.r, store, key, wid, "ops@test", shred=True)
    key = blob_name(wid, "key.json")
    assert events.index(("put", key)) < min(i for i, e in enumerate(events) if e[0] == "delete")
    assert keys > 0 and blobs >= 5
    assert list(store.list(blob_name(wid, ""))) == []
    assert list(world.r.scan_iter(match=f"rqp:w:{wid}:*")) == [] and world.r.zscore(WORKLOADS, wid) is None
    assert _audit(world, operator)[0] == ("ops@test", "delete --shred", True)


def test_delete_refuses_a_running_workload(world, proc, key):
    wid = world.pack("busy", [{"n": i} for i in range(N)])
    _started(world, proc, wid)
    with pytest.raises(WorkloadError, match=f"workload {wid} is running; cancel it first"):
        control.delete(world.r, world.store, key, wid, "ops@test")


def test_the_commands(world, proc, cli_env, capsys):
    wid = world.pack("by-hand", [{"n": i} for i in range(N)])
    _started(world, proc, wid)
    assert rqp_main(["pause", wid]) == 0
    assert rqp_main(["resume", wid]) == 0
    assert rqp_main(["cancel", wid]) == 0
    assert rqp_main(["pause", wid]) == 7
    assert rqp_main(["audit", "--json"]) == 0
    assert rqp_main(["delete", wid]) == 7  # not ended: refused before any confirmation is asked for
    world.r.hset(f"rqp:w:{wid}:meta", "state", "cancelled")  # as the scheduler ends it
    assert rqp_main(["delete", wid]) == 2  # not a terminal: --yes is required
    out, err = capsys.readouterr()
    assert f"rqp: error: workload {wid} is cancelling; cancel it first" in err
    assert f"workload {wid}: paused: nothing new is queued" in out and f"workload {wid}: cancelling" in out
    assert f"rqp: error: workload {wid} is cancelling; only a workload that is running can be paused" in err
    audit = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [(a["what"], a["verified"], a["cut"]) for a in audit] == [
        ("cancel", True, ""),
        ("resume", True, ""),
        ("pause", True, ""),
    ]
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


def test_cli_actions_are_verified_audit_entries(world, proc, cli_env, operator, capsys):
    """`rqp pause|cancel|priority|delete` each leave one entry in the audit chain, signed by the
    operator key and verified; `rqp audit --verify` says the chain is whole."""
    wid = world.pack("audited", [{"n": i} for i in range(N)])
    _started(world, proc, wid)
    assert rqp_main(["priority", wid, "low"]) == 0
    assert rqp_main(["pause", wid]) == 0
    assert rqp_main(["cancel", wid]) == 0
    world.r.hset(f"rqp:w:{wid}:meta", "state", "cancelled")  # as the scheduler ends it
    assert rqp_main(["delete", wid, "--yes"]) == 0
    entries = read_audit(world.r, operator.trust, world.trust())
    assert [(e.what, e.workload, e.verified, e.cut) for e in entries] == [
        ("delete", wid, True, ""),
        ("cancel", wid, True, ""),
        ("pause", wid, True, ""),
        ("priority low", wid, True, ""),
    ]
    assert {e.signer for e in entries} == {operator.key.fingerprint}
    capsys.readouterr()
    assert rqp_main(["audit", "--verify"]) == 0
    assert "audit log verified: 4 entries" in capsys.readouterr().out


def test_retry_failed_takes_the_failed_set_from_the_sealed_summary(world, proc, cli_env, capsys):
    """A Redis writer DELs the `failed` bitmap: `rqp retry --failed` still re-runs the records
    the sealed summary lists as failed, and they run again."""
    script = "def process(r):\n    if r['n'] % 10 == 3:\n        raise ValueError('three')\n    return r['n']\n"
    wid = world.pack("retried", [{"n": i} for i in range(20)], script)
    world.run_to_end(world.run(wid), proc)
    assert read_summary(world.store, world.run(wid).workload).failed == 2
    world.r.delete(f"rqp:w:{wid}:failed")
    capsys.readouterr()
    assert rqp_main(["retry", wid, "--failed"]) == 0
    out = capsys.readouterr().out
    assert f"re-queued 2 failed records of {wid}" in out
    assert Ledger(world.r, wid).state() == State.RUNNING
    assert b"retried" in world.r.lrange("rqp:submissions", 0, -1)
    (entry,) = [e for e in read_audit(world.r, None, world.trust()) if e.workload == wid]
    assert entry.what == "retry" and entry.verified is False  # signed by the operator, not trusted here
    # the scheduler runs the new round: the two records ran again (and fail again, as scripted)
    run = world.run(wid)
    world.run_to_end(run, proc)
    assert Head.open(run.workload, Ledger(world.r, wid).head()).round == 2
    s = read_summary(world.store, run.workload)
    assert (s.total, s.done, s.failed) == (20, 18, 2)
    assert sorted(f.id for f in s.failures) == [3, 13] and all((f.attempts or 0) >= 1 for f in s.failures)


def test_unknown_workloads_are_refused_and_nothing_is_written(world, cli_env, capsys):
    """A typo'd id exits 7 naming it, and leaves Redis exactly as it was (no audit entry, no
    tombstone, no key)."""
    world.pack("packed-only", [{"n": 1}])
    world.r.set("sentinel", "1")
    before = sorted(world.r.keys("*"))
    for argv in (
        ["delete", "dmeo", "--yes"],
        ["priority", "zzztypo", "low"],
        ["pause", "nosuch"],
        ["resume", "nosuch"],
        ["cancel", "nosuch"],
        ["retry", "nosuch", "--failed"],
    ):
        assert rqp_main(argv) == 7, argv
        err = capsys.readouterr().err
        assert f"workload {argv[1]} is not known" in err and "('rqp list')" in err, err
    assert sorted(world.r.keys("*")) == before
    # a packed workload that has not started takes a priority (a signed request, no Redis state)
    assert rqp_main(["priority", "packed-only", "high"]) == 0
    assert Ledger(world.r, "packed-only").priority().value == "high"


def test_a_forged_audit_entry_is_marked_and_fails_verify(world, proc, cli_env, capsys):
    """An entry LPUSHed by a Redis writer (no key) is shown UNVERIFIED, and `rqp audit --verify`
    exits 4 naming it."""
    wid = world.pack("forged", [{"n": i} for i in range(N)])
    _started(world, proc, wid)
    assert rqp_main(["pause", wid]) == 0
    forged = {"at": 1.0e9, "who": "alice (console)", "what": "delete --shred", "workload": wid}
    world.r.lpush("rqp:audit", json.dumps(forged))
    capsys.readouterr()
    assert rqp_main(["audit"]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "alice (console)" in x]
    assert "UNVERIFIED: unsigned" in line
    (paused,) = [x for x in out.splitlines() if " pause " in x]
    assert "[verified (" in paused
    assert rqp_main(["audit", "--verify"]) == 4
    err = capsys.readouterr().err
    assert "entry 0 (" in err and f"alice (console) delete --shred {wid}): not verified: unsigned" in err


def test_reports_of_an_ended_workload_are_its_sealed_summarys(world, proc, cli_env, capsys, monkeypatch):
    """Issue #22: forged counters (HINCRBY done 10, failed -1,000,000) never turn failures into a
    success: with the KEK, ``rqp status`` and ``rqp list`` give the sealed summary's counts; without
    it they say the counts are unverified and exit non-zero."""
    script = "def process(r):\n    if r['n'] % 10 == 0:\n        raise ValueError('tens')\n    return r['n']\n"
    wid = world.pack("forged-n", [{"n": i} for i in range(N)], script=script)
    world.run_to_end(world.run(wid), proc)
    world.r.hincrby(f"rqp:w:{wid}:n", "done", 10)
    world.r.hincrby(f"rqp:w:{wid}:n", "failed", -1_000_000)
    assert rqp_main(["status", wid, "--json"]) == 1
    st = json.loads(capsys.readouterr().out)
    assert (st["done"], st["failed"], st["verified"]) == (N - 4, 4, True)
    assert rqp_main(["list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(wid))
    assert f"{N - 4:,}/{N}" in row and row.split()[1] == "done"
    monkeypatch.delenv("RQP_KEK_FILE")
    assert rqp_main(["status", wid]) == 4
    out = capsys.readouterr().out
    assert "unverified: these counts are Redis's own; no KEK here" in out
    assert rqp_main(["list"]) == 0
    out = capsys.readouterr().out
    assert "done*" in out and "no sealed summary vouches for these counts" in out
