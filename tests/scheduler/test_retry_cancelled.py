"""Issue 24 item 3: ``rqp retry W --failed`` of a cancelled workload re-runs the failed records
``rqp results W --failed`` lists (it said "no failed records"); what never ran stays never run,
and the workload ends cancelled again with the same counts."""

from __future__ import annotations

import json

from rqp import control
from rqp.cli import main as rqp_main
from rqp.ledger import REJECTED, Head, Ledger, State
from rqp.summary import read_summary

N = 100
THREES = "def process(r):\n    if r['n'] % 10 == 3:\n        raise ValueError('three')\n    return r['n']\n"


def _step_until_ended(world, proc, run) -> None:
    for _ in range(50):
        if run.step():
            return
        world.work(proc)
    raise AssertionError(f"workload {run.id} did not end")


def test_retry_failed_of_a_cancelled_workload_reruns_what_results_failed_lists(world, proc, cli_env, capsys, operator):
    wid = world.pack("cancelled-fails", [{"n": i} for i in range(N)], THREES)
    run = world.run(wid)
    for _ in range(3):  # a few chunks done, their failures retried to the end (max_attempts 2)
        run.step()
        world.work(proc)
    assert control.cancel(world.r, operator.key, wid, "ops@test") == "cancelling"
    _step_until_ended(world, proc, run)
    before = read_summary(world.store, run.workload)
    assert before.state == "cancelled" and before.failed >= 1 and before.cancelled >= 1
    capsys.readouterr()
    assert rqp_main(["results", wid, "--failed"]) == 0
    listed = sorted(json.loads(x)["id"] for x in capsys.readouterr().out.splitlines())
    assert listed == sorted(f.id for f in before.failures)

    assert rqp_main(["retry", wid, "--failed"]) == 0
    out = capsys.readouterr().out
    assert f"re-queued {len(listed)} failed records of {wid}" in out, out
    rejected_before = world.r.llen(REJECTED)
    run = world.run(wid)
    _step_until_ended(world, proc, run)
    led = Ledger(world.r, wid)
    assert Head.open(run.workload, led.head()).round == 2  # the failed records ran in a new round
    after = read_summary(world.store, run.workload)
    assert after.state == "cancelled" and led.state() == State.CANCELLED
    assert (after.total, after.done, after.failed, after.cancelled) == (
        before.total, before.done, before.failed, before.cancelled,
    )  # fmt: skip
    assert sorted(f.id for f in after.failures) == listed  # ran again and failed again, as scripted
    assert all("three" in (f.error or "") for f in after.failures)
    assert world.r.llen(REJECTED) == rejected_before  # the retry's cleared cancel is no "forged control field"
