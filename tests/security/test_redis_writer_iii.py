"""Issue #22's seven reproductions (and three the fuzzer found): a Redis writer with the password
and no key, with the scheduler's and processor's own code in process against a real Redis and
the real ``rqp`` and ``rqp-scheduler`` commands reading the outcome.

Each was a strict xfail while its hole was open; each now asserts what happens on main: the
forgery refused, put back or flagged (with the message), never an exit 0 with a short or wrong
answer. Each docstring says what happened before ("Was") and what happens now ("Now").
"""

from __future__ import annotations

import json
import os
import struct

import pytest

from rqp import control
from rqp.cli import main as rqp_main
from rqp.errors import RqpError
from rqp.ledger import AUDIT, SUBMISSIONS, Ledger, State, fleet, job_id, next_submission, register_processor
from rqp.summary import read_summary
from rqp_scheduler.run.reclaim import FREE_LOST_RERUNS

#: record 5 always fails (after 2 attempts), every other one succeeds
SCRIPT = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"
N = 40


@pytest.fixture
def cli_env(world, monkeypatch):
    """The ``rqp`` and ``rqp-scheduler`` command lines pointed at the world."""
    for name, value in {
        "RQP_REDIS_URL": world.settings.redis_url,
        "RQP_BLOB_URL": world.settings.blob_url,
        "RQP_ALLOW_INSECURE_REDIS": "true",
        "RQP_KEK_FILE": str(world.settings.kek_file),
        "RQP_TRUSTED_SIGNERS_FILE": str(world.settings.trusted_signers_file),
        "RQP_CHUNK_SIZE": "4",
    }.items():
        monkeypatch.setenv(name, value)


def _scheduler_run(wid: str) -> int:
    """``rqp-scheduler run W`` on a workload that has ended: its exit code and line come from
    what Redis says of the workload (the code under test)."""
    from rqp_scheduler.cli import main as scheduler_main

    return scheduler_main(["run", wid])


def _results(capsys, wid: str) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = rqp_main(["results", wid])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def control_rejected(world) -> list[dict]:
    """Entries of ``rqp:rejected``, where a refused request must be recorded."""
    return [json.loads(x) for x in world.r.lrange("rqp:rejected", 0, -1)]


def _started(world, proc, wid: str):
    run = world.run(wid)
    for _ in range(3):
        run.step()
        world.work(proc)
    return run


def _to_end(world, run, proc, steps: int = 200) -> None:
    for _ in range(steps):
        if run.step():
            return
        world.work(proc)
    raise AssertionError(f"workload {run.id} did not end")


def test_1_a_forged_cancel_is_refused_and_the_workload_finishes(world, proc, cli_env, capsys):
    """Was: `HSET meta control cancel state cancelling` mid-run cancelled it: `rqp-scheduler run`
    exited 0, `rqp results` exited 0 with part of the lines, `rqp audit` showed nothing. Now: no
    signed request asked for it, so the scheduler ignores it, puts the shown state back to running
    and records "control field cancel ... was not asked for by any signed request" in rqp:rejected."""
    wid = world.pack("forged-cancel", [{"n": i} for i in range(N)])
    run = _started(world, proc, wid)
    world.r.hset(Ledger(world.r, wid).k.meta, mapping={"control": "cancel", "state": "cancelling"})
    _to_end(world, run, proc)
    s = read_summary(world.store, run.workload)
    code, lines = _results(capsys, wid)
    assert (s.total, s.done, s.cancelled) == (N, N, 0), f"a forged cancel took effect: {s}"
    assert code == 0 and len(lines) == N
    reasons = [e["reason"] for e in control_rejected(world) if e.get("workload") == wid]
    assert any("control field cancel" in r and "was not asked for by any signed request" in r for r in reasons), (
        f"the forgery is not in rqp:rejected: {reasons}"
    )


def test_2_forged_counters_never_turn_failures_into_success(world, proc, cli_env, capsys):
    """Was: `HINCRBY n done 10` and `HINCRBY n failed -1000000` after the end: `rqp-scheduler
    run` exited 0 ("... done, 0 failed"), `rqp status` exited 0 while record 5 failed. Now both
    report the sealed summary's counts (39 done, 1 failed) and exit 1."""
    wid = world.pack("forged-counts", [{"n": i} for i in range(N)], script=SCRIPT)
    run = world.run(wid)
    _to_end(world, run, proc)
    k = Ledger(world.r, wid).k
    world.r.hincrby(k.n, "done", 10)
    world.r.hincrby(k.n, "failed", -1000000)
    s = read_summary(world.store, run.workload)
    assert (s.done, s.failed) == (N - 1, 1)
    capsys.readouterr()
    assert _scheduler_run(wid) == 1, "rqp-scheduler run reports success while a record failed"
    capsys.readouterr()
    code = rqp_main(["status", wid, "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert (shown["done"], shown["failed"]) == (N - 1, 1), f"rqp status shows forged counts: {shown}"
    assert code == 1


def test_3_a_forged_audit_entry_is_not_shown_as_fact(world, cli_env, capsys, operator):
    """Was: `rqp audit` printed "alice (console) delete --shred W" as if it happened. Now the
    entry is not a signed request: shown with verified=false."""
    real = world.pack("audited", [{"n": 1}])
    control.set_priority(world.r, operator.key, real, "high", "ops@test", world.store)
    forged = {"at": 1.0, "who": "alice (console)", "what": "delete --shred", "workload": real}
    world.r.lpush(AUDIT, json.dumps(forged))
    capsys.readouterr()
    rqp_main(["audit", "--json"])
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    shown = [e for e in entries if e.get("what") == "delete --shred"]
    assert shown and all(e.get("verified") is False for e in shown), f"a forged entry is shown as fact: {shown}"


def test_4_retry_failed_takes_the_failed_set_from_the_sealed_summary(world, proc, cli_env, capsys):
    """Was: after `DEL rqp:w:W:failed`, `rqp retry W --failed` said "no failed records". Now
    the failed set comes from the sealed summary: "re-queued 1 failed records"."""
    wid = world.pack("no-failed", [{"n": i} for i in range(N)], script=SCRIPT)
    run = world.run(wid)
    _to_end(world, run, proc)
    assert read_summary(world.store, run.workload).failed == 1
    world.r.delete(Ledger(world.r, wid).k.failed)
    capsys.readouterr()
    assert rqp_main(["retry", wid, "--failed"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"re-queued 1 failed records of {wid}"), out


def test_5_a_forged_fleet_entry_is_not_presented_as_verified(world):
    """Was: a forged `gpu-07:4242` "with landlock, seccomp, rlimits" was listed like a real one.
    Now every fleet entry carries self_reported=True (nothing unforgeable backs any of them), and
    the console labels them so."""
    register_processor(world.r, host="gpu-07", pid=4242, protections="landlock, seccomp, rlimits", workers=8,
                       started_at=1.0)  # fmt: skip
    listed = [e for e in fleet(world.r) if e["host"] == "gpu-07"]
    assert all(e.get("self_reported") is True or e.get("verified") is False for e in listed), (
        f"a forged processor is listed as real: {listed}"
    )


def test_6_a_replayed_submission_never_reruns_a_cancelled_workload(world, proc, cli_env, capsys, operator):
    """Was: `RPUSH rqp:submissions W` of a cancelled workload: a serving scheduler ran it again
    and its state flipped (to done, or failed with `rqp results` exiting 4: results replaced).
    Now its sealed head is closed: it is reported ended ("already cancelled; nothing to schedule")
    and never run; with its shown state forged too the attempt is recorded in rqp:rejected. A plain
    replay (shown state still cancelled) is only logged, not recorded (run/workload_run.py)."""
    from rqp_scheduler.cli import Scheduler

    wid = world.pack("replayed", [{"n": i} for i in range(N)])
    run = _started(world, proc, wid)
    control.cancel(world.r, operator.key, wid, "ops@test")
    _to_end(world, run, proc)
    assert Ledger(world.r, wid).state() == State.CANCELLED
    code, before = _results(capsys, wid)
    assert code == 0
    sched = Scheduler(world.settings)
    try:
        # a plain replay: the sealed head is closed, so the scheduler only reports it as ended
        world.r.rpush(SUBMISSIONS, wid)
        while (sub := next_submission(world.r)) is not None:  # what 'rqp-scheduler serve' does
            sched._try_add(sub)
        assert wid not in sched.runs and not sched.failures, "a finished workload was started again"
        summary = sched.summaries[wid]
        assert summary is not None and summary.final_state == "cancelled"
        # the replay with the shown state forged to running too: refused and recorded
        world.r.hset(Ledger(world.r, wid).k.meta, "state", "running")
        world.r.rpush(SUBMISSIONS, wid)
        while (sub := next_submission(world.r)) is not None:
            sched._try_add(sub)
        assert wid not in sched.runs and not sched.failures, "a finished workload was started again"
    finally:
        sched.hosts.close()
        sched.writer.shutdown(wait=True)
    code, after = _results(capsys, wid)
    assert code == 0 and after == before, "a cancelled workload's results changed or became unreadable"
    reasons = [e["reason"] for e in control_rejected(world) if e.get("workload") == wid]
    assert any(
        "has ended (its sealed head is closed) but Redis shows it running: not run again" in r for r in reasons
    ), reasons


def test_7_junk_in_a_chunk_key_fails_that_workload_loudly_and_nothing_else(world, proc):
    """Was: junk bytes in `rqp:w:W:c:<chunk>` whose lease ended: reclaiming it raised
    `struct.error` out of `unpack_values`, which killed `rqp-scheduler serve`. Now it is an
    IntegrityError ("a packed value in Redis is truncated or not rqp's (written behind rqp's
    back)") that fails that workload alone; the bystander finishes."""
    wid = world.pack("junk-chunk", [{"n": i} for i in range(N)])
    other = world.pack("bystander", [{"n": i} for i in range(8)])
    run, bystander = world.run(wid), world.run(other)
    run.step()
    led = Ledger(world.r, wid)
    chunk = "c00000000"
    # 36 bytes: one (id, length) header and its value, then 4 bytes that cannot be a header
    world.r.set(led.k.chunk(chunk), struct.pack(">II", 0, 24) + os.urandom(24) + b"junk")
    errors: list[str] = []
    # the lease of each generation ends (ZADD pending 0): the re-runs after a lost worker are free
    # (FREE_LOST_RERUNS), then attempts are spent, and the last one gives up and reads the key
    for gen in range(FREE_LOST_RERUNS + world.settings.max_attempts + 1):
        jid = job_id(wid, chunk, gen)
        world.r.zadd(led.k.pending, {jid: 0})
        for queue in world.r.scan_iter(match="rq:queue:*"):
            world.r.lrem(queue, 0, jid)
        try:
            run._reclaim_expired()
        except RqpError as exc:
            errors.append(str(exc))
            break  # the workload failing loudly is what should happen
    assert errors and "a packed value in Redis is truncated or not rqp's (written behind rqp's back)" in errors[0]
    _to_end(world, bystander, proc)
    s = read_summary(world.store, bystander.workload)
    assert (s.total, s.done) == (8, 8)


# ---------------------------------------------------------------------- found by the fuzzer
def test_8_a_non_utf8_byte_in_one_workload_breaks_no_listing(world, proc, cli_env, capsys):
    """Beyond the issue's seven (``tools/chaos.py --family progress``): one byte that is not UTF-8
    in a workload's plain ``perf`` hash (or any meta field) makes ``rqp status`` and ``rqp list``
    die with a ``UnicodeDecodeError`` traceback -- ``rqp list`` for every workload. Now the ledger
    reads bytes that are not UTF-8 as junk (U+FFFD), which the reports treat as missing."""
    wid = world.pack("junk-perf", [{"n": i} for i in range(8)])
    other = world.pack("listed", [{"n": i} for i in range(8)])
    for w in (wid, other):
        _to_end(world, world.run(w), proc)
    world.r.hset(Ledger(world.r, wid).k.perf, "seconds", b"\xfd")
    capsys.readouterr()
    assert rqp_main(["list"]) == 0
    assert other in capsys.readouterr().out, "one workload's junk hid the others"
    assert isinstance(rqp_main(["status", wid]), int)  # an exit code and a line, not an exception
    assert "Traceback" not in capsys.readouterr().err


def test_9_a_non_utf8_byte_in_perf_does_not_kill_the_scheduler(world, proc):
    """Beyond the issue's seven (``tools/chaos.py --family progress --seed 8``): eight random
    bytes in a running workload's ``perf`` hash make the scheduler's own step raise
    ``UnicodeDecodeError`` (its progress event reads ``perf``), which killed
    ``rqp-scheduler serve`` and every workload it supervises. Now the value reads as junk and
    both workloads finish."""
    wid = world.pack("junk-perf-run", [{"n": i} for i in range(N)])
    other = world.pack("bystander-2", [{"n": i} for i in range(8)])
    run, bystander = world.run(wid), world.run(other)
    run.step()
    world.work(proc)
    world.r.hset(Ledger(world.r, wid).k.perf, "first", b"\x85\x85junk")
    try:
        for _ in range(50):
            run._last["progress"] = 0.0  # its progress event is due (every few seconds in service)
            if run.step():
                break
            world.work(proc)
    except RqpError:
        pass  # that workload failing loudly is what should happen
    _to_end(world, bystander, proc)
    assert read_summary(world.store, bystander.workload).done == 8


def test_10_a_pending_member_that_is_no_job_id_does_not_kill_the_scheduler(world, proc):
    """Beyond the issue's seven (``tools/chaos.py --family derived --seed 70``, and 89):
    ``ZADD rqp:w:W:pending 0 junk`` -- the scheduler reclaims the "expired" member and
    ``JobId.parse`` raised ``ValueError``, which killed ``rqp-scheduler serve``. Now the
    reclaimer drops the member, records why in rqp:rejected, and the workload finishes exactly."""
    wid = world.pack("junk-pending", [{"n": i} for i in range(N)])
    other = world.pack("bystander-3", [{"n": i} for i in range(8)])
    run, bystander = world.run(wid), world.run(other)
    run.step()
    world.work(proc)
    world.r.zadd(Ledger(world.r, wid).k.pending, {"junk": 0})
    run._reclaim_expired()
    assert world.r.zscore(Ledger(world.r, wid).k.pending, "junk") is None, "the junk lease entry was kept"
    reasons = [e["reason"] for e in control_rejected(world) if e.get("workload") == wid]
    assert any("lease entry 'junk' is not one of its job ids" in r for r in reasons), reasons
    _to_end(world, run, proc)
    assert read_summary(world.store, run.workload).done == N
    _to_end(world, bystander, proc)
    assert read_summary(world.store, bystander.workload).done == 8


def test_11_a_forged_shown_state_never_makes_retry_say_nothing_failed(world, proc, cli_env, capsys):
    """Found by the fuzzer (``tools/chaos.py --family control --seed 15``): `HSET meta state
    cancelled` on a workload that ended done with a failed record made `rqp retry W --failed` say
    "no failed records" and exit 0. Now a state shown as not ended is refused, naming both the
    sealed summary and Redis; one shown as cancelled (an ended state: a cancelled workload's
    failed records are retried, issue 24 item 3) re-runs what the sealed summary lists, and the
    round ends as that summary's state (done), not as the forged one."""
    wid = world.pack("forged-state-retry", [{"n": i} for i in range(N)], script=SCRIPT)
    _to_end(world, world.run(wid), proc)
    world.r.hset(Ledger(world.r, wid).k.meta, "state", "running")
    capsys.readouterr()
    code = rqp_main(["retry", wid, "--failed"])
    err = capsys.readouterr().err
    assert code == 7, err
    assert f"workload {wid}: its sealed summary lists 1 failed records but Redis shows it running: not retried" in err
    world.r.hset(Ledger(world.r, wid).k.meta, "state", "cancelled")
    assert rqp_main(["retry", wid, "--failed"]) == 0
    assert f"re-queued 1 failed records of {wid}" in capsys.readouterr().out
    run = world.run(wid)
    _to_end(world, run, proc)
    s = read_summary(world.store, run.workload)
    assert (s.state, s.total, s.done, s.failed, s.cancelled) == ("done", N, N - 1, 1, 0)
