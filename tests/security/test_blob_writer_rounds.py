"""A blob-store and Redis writer's review (F0, F10, F8, F1 and F6's side effect): round 1's
blobs put back after a ``rqp retry --failed`` round, a consolidation that fails after writing its
results, a junk events stream, stale checkpoint segments after a Redis wipe, and a retry round
lost with Redis. Real Redis, a real local blob store, the scheduler's and processor's own code
in process, the ``rqp`` command line in process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_helpers import one_line_error, run
from rounds import keep_round, put_back

import rqp
from rqp import control
from rqp.ledger import SUBMISSIONS, Head, Ledger, State
from rqp.results import read_results
from rqp.results_root import STAGED_SUFFIX
from rqp.summary import SUMMARY_BLOB, StaleSummaryError, read_summary
from rqp.verification import check_proof, make_proof
from rqp.workload import blob_name
from rqp_scheduler.consolidate import StateError

from .conftest import wait_until

#: these tests hand check_proof parsed documents on purpose (the forged fields are easier to
#: write so); what the warning says is tested where it is the point
pytestmark = pytest.mark.filterwarnings("ignore::rqp.proof_check.ParsedProofWarning")

#: record 5 always fails (after 2 attempts), every other one succeeds
FIVE = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"
#: what a blob-store writer keeps of a round and puts back later


def _flaky(until: float) -> str:
    """Records whose n is a multiple of 10 fail until ``until`` (epoch seconds), then succeed."""
    return (
        "import time\n\ndef process(r):\n"
        f"    if r['n'] % 10 == 0 and time.time() < {until!r}:\n"
        "        raise ValueError('not yet')\n"
        "    return r['n'] * 2\n"
    )


def _signing_results(world, operator) -> Path:
    """The world's scheduler signs results roots with the operator key; its public half's path."""
    world.settings = world.settings.replace(results_key_file=operator.path)
    return operator.path.with_name("operator.pub.pem")


def _opened(world, wid: str):
    """The workload as every reader opens it (``Backends.workload``: its sealed head is read)."""
    return world.backends().workload(wid)


def _rejected(world, wid: str | None) -> list[str]:
    return [e["reason"] for e in map(json.loads, world.r.lrange("rqp:rejected", 0, -1)) if e.get("workload") == wid]


def _retry(world, operator, wid: str) -> int:
    return control.retry_failed(world.r, world.store, _opened(world, wid), operator.key, "ops@test")


# ---------------------------------------------------------------------------------------- F0
def test_f0_round_1_blobs_put_back_after_a_retry_round_are_refused_by_every_reader(
    world, proc, cli_env, capsys, operator, tmp_path
):
    """Was: after ``rqp retry --failed`` (round 2: all 30 done), round 1's summary, results,
    leaves and inputs put back made ``rqp status`` say -- verified -- 27 done 3 failed,
    ``rqp results`` print 27 lines and ``rqp verify`` pass. Now: each refuses with one line naming
    the workload, the round found and the round expected; the genuine round-2 blobs read again."""
    pub = _signing_results(world, operator)
    until = time.time() + 6
    wid = world.pack("rb1", [{"n": i} for i in range(30)], _flaky(until))
    world.run_to_end(world.run(wid), proc)
    first = read_summary(world.store, _opened(world, wid))
    assert (first.round, first.done, first.failed) == (1, 27, 3)
    proof1 = tmp_path / "p1.json"
    proof1.write_text(json.dumps(make_proof(world.store, _opened(world, wid), 0)))
    round1 = keep_round(world, wid)

    wait_until(lambda: time.time() > until, timeout=30, what="the flaky records' clock")
    assert _retry(world, operator, wid) == 3
    world.run_to_end(world.run(wid), proc)
    second = read_summary(world.store, _opened(world, wid))
    assert (second.round, second.done, second.failed) == (2, 30, 0)
    code, out, _ = run(capsys, "verify", wid)
    assert code == 0 and f"workload {wid}: 30 records match the round 2 root" in out, out
    round2 = keep_round(world, wid)

    put_back(world, wid, round1)  # the blob-store writer's rollback
    expected = f"workload {wid}: summary.enc is round 1 but the workload's sealed head says round 2"
    with pytest.raises(StaleSummaryError, match=expected):
        read_summary(world.store, _opened(world, wid))
    for argv in (["status", wid], ["results", wid], ["results", wid, "--failed"], ["verify", wid]):
        code, out, err = run(capsys, *argv)
        assert code == 4, (argv, out, err)
        line = one_line_error(err)
        assert expected in line and "the blob was replaced with an older one" in line, (argv, line)
        assert "27" not in out, (argv, out)  # none of round 1's counts or lines shown
    _, out, _ = run(capsys, "list")  # a list of many: that one marked unverified, the rest listed
    row = next(line for line in out.splitlines() if line.startswith(wid))
    assert "done*" in row and "27" not in row, out
    client = rqp.Client(
        redis_url=world.settings.redis_url,
        blob_url=world.settings.blob_url,
        kek_file=str(world.settings.kek_file),
        allow_insecure_redis=True,
    )
    try:
        w = client.workload(wid)
        for read in (w.status, lambda: list(w.results()), w.root, lambda: w.verify(signer=pub)):
            with pytest.raises(StaleSummaryError, match=expected):
                read()
    finally:
        client.close()

    # a proof is checked offline: it vouches for the round it names, and says so
    doc = json.loads(proof1.read_text())
    assert doc["round"] == 1 and doc["statement"]["round"] == 1
    assert check_proof(doc, pub.read_bytes()).startswith("sha256:")
    code, out, _ = run(capsys, "verify-proof", str(proof1), "--signer", str(pub))
    assert code == 0 and "is in the round 1 root" in out and "vouches for that round only" in out, out
    doc["round"] = 2  # the shown round is the signed one, not an editable label
    edited = tmp_path / "p1-edited.json"
    edited.write_text(json.dumps(doc))
    code, _, err = run(capsys, "verify-proof", str(edited), "--signer", str(pub))
    assert code == 4 and "its signed statement is round 1" in one_line_error(err)

    put_back(world, wid, round2)
    code, out, _ = run(capsys, "status", wid)
    assert code == 0 and "30" in out, out
    assert len(list(read_results(world.store, _opened(world, wid)))) == 30
    proof2 = make_proof(world.store, _opened(world, wid), 0)
    assert proof2["round"] == 2 and proof2["record"]["kind"] == "result"


def test_f0_a_root_of_another_round_than_its_summary_is_refused(world, proc, operator):
    """The signed statement names its round, compared with the (authenticated) summary's."""
    from rqp.results_root import Attestation
    from rqp.verification import check_rows, stored_rows

    _signing_results(world, operator)
    wid = world.pack("rounds-root", [{"n": i} for i in range(8)], FIVE)
    world.run_to_end(world.run(wid), proc)
    w = _opened(world, wid)
    s = read_summary(world.store, w)
    att = Attestation.from_dict(s.root, wid)
    assert att.round == 1 and s.round == 1
    with pytest.raises(Exception, match="is round 1 but its summary is round 2"):
        att.check(w, operator.trust, wid, 2)
    report = check_rows(world.store, w, operator.trust, stored_rows(world.store, w))
    assert report.ok and report.round == 1


# ---------------------------------------------------------------------------------------- F10
def test_f10_a_consolidation_that_fails_leaves_the_ended_rounds_results_readable(world, proc, operator):
    """Was: a retry round whose consolidation failed (a Redis writer deleted a status record)
    had already overwritten ``results.enc``: the ended round's summary no longer matched it and
    every reader said "replaced". Now: the new results, leaves and inputs are staged and swapped
    in only after the checks, so round 1's results read as before and nothing staged is left."""
    _signing_results(world, operator)
    wid = world.pack("rr1", [{"n": i} for i in range(40)], FIVE)
    world.run_to_end(world.run(wid), proc)
    before = keep_round(world, wid)
    lines = list(read_results(world.store, _opened(world, wid)))
    assert len(lines) == 39
    assert _retry(world, operator, wid) == 1
    run_ = world.run(wid)
    st = Ledger(world.r, wid).k.st
    with pytest.raises(StateError, match="record 5 is neither done nor failed"):
        for _ in range(50):
            world.r.hdel(st, "5")  # the Redis writer, all through the round
            if run_.step():
                break
            world.work(proc)
    assert keep_round(world, wid) == before  # nothing a reader reads was touched
    w = _opened(world, wid)
    assert list(read_results(world.store, w)) == lines
    assert read_summary(world.store, w).round == 1  # the round running is 2: its summary is 1's
    assert not [n for n in world.store.list(blob_name(wid, "")) if n.endswith(STAGED_SUFFIX)]


# ---------------------------------------------------------------------------------------- F8
def test_f8_a_junk_events_stream_stalls_its_events_and_fails_no_workload(world, proc):
    """Was: ``HSET rqp:mq:rqp-events a b`` (and ``SET rqp:mq:rqp-status junk``) failed every
    workload started meanwhile: its ``started`` event hit WRONGTYPE. Now: the workload runs to
    done, its events wait in the outbox (recorded once in rqp:rejected, naming the key and the
    fix) and are published once the key is deleted."""
    events, status = world.settings.events_queue, world.settings.status_queue
    world.r.hset(f"rqp:mq:{events}", "a", "b")
    world.r.set(f"rqp:mq:{status}", "junk")
    wid = world.pack("mq1", [{"n": i} for i in range(12)])
    run_ = world.run(wid)
    world.run_to_end(run_, proc)
    assert Ledger(world.r, wid).state() == State.DONE
    assert read_summary(world.store, run_.workload).done == 12
    stalled = [r for r in _rejected(world, None) if f"message queue {events}:" in r]
    assert len(stalled) == 1, _rejected(world, None)
    assert f"rqp:mq:{events} is a hash, not a stream" in stalled[0] and f"DEL rqp:mq:{events}" in stalled[0]
    assert world.r.hlen("rqp:outbox") >= 1  # the durable "done" event waits
    world.r.delete(f"rqp:mq:{events}")
    from rqp.ledger import flush_outbox

    assert flush_outbox(world.r, world.mq(), older_than=0) >= 1
    kinds = [json.loads(m.body)["kind"] for m in world.mq().peek(events, 100)]
    assert "event" in kinds


# ---------------------------------------------------------------------------------------- F1
def test_f1_stale_checkpoints_after_a_redis_wipe_never_reopen_a_done_workload(world, proc):
    """Was: checkpoint segments copied while W ran, put back after it was done and its keys
    deleted, re-opened W from checkpoint 4, which then hung in "consolidating". Now (since F6's
    fix, kept by the round check): W's sealed summary is of its current round, so it is not
    resumed: nothing queued, no Redis state made, the summary untouched, the replay recorded."""
    world.settings = world.settings.replace(checkpoint_seconds=0.001)
    wid = world.pack("ck1", [{"n": i} for i in range(120)])
    run_ = world.run(wid)
    prefix = blob_name(wid, "checkpoints/")
    saved: dict[str, bytes] = {}

    def some_checkpoints() -> bool:
        run_.step()
        world.work(proc)
        saved.update({n: world.store.get(n) for n in world.store.list(prefix)})
        return len(saved) >= 2

    wait_until(some_checkpoints, timeout=60, what="two checkpoint segments")
    world.run_to_end(run_, proc, steps=400)
    assert not list(world.store.list(prefix))  # deleted when it ended
    sealed = world.store.get(blob_name(wid, SUMMARY_BLOB))
    for k in list(world.r.scan_iter(match=f"rqp:w:{wid}:*")):
        world.r.delete(k)
    for name, data in saved.items():
        world.store.put(name, data)
    world.r.rpush(SUBMISSIONS, wid)
    again = world.run(wid)
    assert again.finished and again.step()
    assert world.queued_jobs() == [] and not world.r.exists(Ledger(world.r, wid).k.meta)
    assert world.store.get(blob_name(wid, SUMMARY_BLOB)) == sealed
    assert any("has ended" in r and "sealed summary" in r for r in _rejected(world, wid))


# ---------------------------------------------------------------------------------------- F6's side effect
def test_a_retry_round_lost_with_redis_resumes_and_an_ended_one_does_not(world, proc, operator):
    """Was (F6's fix): Redis lost entirely while a ``rqp retry --failed`` round ran refused the
    workload (round 1's summary exists) instead of resuming it. Now: the round marker sealed in
    the blob store says round 2 runs and the summary is round 1's, so round 2 runs again from it
    and ends with its own summary; lost again after that, it is refused (its round's summary
    exists)."""
    wid = world.pack("lost-retry", [{"n": i} for i in range(40)], FIVE)
    world.run_to_end(world.run(wid), proc)
    assert _retry(world, operator, wid) == 1
    run_ = world.run(wid)
    assert Head.open(run_.workload, Ledger(world.r, wid).head()).round == 2
    world.r.flushall()  # Redis lost entirely, round 2 running
    world.r.rpush(SUBMISSIONS, wid)
    resumed = world.run(wid)
    assert not resumed.finished
    assert Head.open(resumed.workload, Ledger(world.r, wid).head()).round == 2
    world.run_to_end(resumed, proc)
    after = read_summary(world.store, _opened(world, wid))
    assert (after.round, after.done, after.failed, [f.id for f in after.failures]) == (2, 39, 1, [5])
    assert len(list(read_results(world.store, _opened(world, wid)))) == 39

    sealed = world.store.get(blob_name(wid, SUMMARY_BLOB))
    world.r.flushall()  # lost again, after round 2 ended
    world.r.rpush(SUBMISSIONS, wid)
    assert world.run(wid).finished
    assert world.queued_jobs() == [] and world.store.get(blob_name(wid, SUMMARY_BLOB)) == sealed


def test_the_round_rule_a_running_round_reads_the_one_before_and_old_summaries_are_round_1():
    """While round N runs (its head not closed) round N-1's summary is the current outcome; once
    closed, only round N's is. A summary from before rounds were recorded counts as round 1."""
    from rqp.summary import ResultsInfo, Summary, check_round

    def summary(round_: int) -> Summary:
        return Summary("w", 1, 1, 0, 0.0, 1.0, 1.0, 1.0, 1, 0, ResultsInfo("r", 0, "", 1), round=round_)

    assert check_round(summary(1), "w", (2, False)).round == 1  # round 2 running
    assert check_round(summary(2), "w", (2, True)).round == 2
    assert check_round(summary(1), "w", None).round == 1  # no head in Redis: nothing to compare with
    assert check_round(summary(0), "w", (1, True)).sealed_round == 1
    with pytest.raises(StaleSummaryError, match=r"round 1 \(written before rounds were recorded\) but .* round 2"):
        check_round(summary(0), "w", (2, True))
    with pytest.raises(StaleSummaryError, match="is round 1 but the workload's sealed head says round 2"):
        check_round(summary(1), "w", (3, False))  # round 3 running: round 2's summary is the current one
