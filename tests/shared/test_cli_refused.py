"""Issue 24 item 1: a submission the scheduler refuses (here: signed by a key it does not trust)
is no longer invisible. ``rqp status`` says ``refused`` with the reason and exits 4 (``--watch``
ends), ``rqp list`` says ``refused*``, ``rqp submit`` of it says so, the events queue gets a
``refused`` event -- each labelled unverified, since only Redis says so -- and a re-packed,
trusted version is shown as itself and runs. The scheduler is ``rqp_scheduler.Scheduler``
itself, ticked as ``rqp-scheduler serve`` ticks it, against a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from harness import bin_path, make_signer
from pty_terminal import PtyCommand
from world import cli_env, world  # noqa: F401 - fixtures

from rqp.cli import main
from rqp.ledger import REFUSED, Ledger, clear_refusal, read_refusal, refusals

RECORDS = "".join(json.dumps({"n": i}) + "\n" for i in range(3))
SCRIPT = "def process(r):\n    return r['n']\n"


@pytest.fixture
def sched(world, cli_env, monkeypatch):  # noqa: F811
    from rqp_scheduler.scheduler import Scheduler

    monkeypatch.chdir(world.root)
    s = Scheduler(world.settings)
    yield s
    for run in s.runs.values():
        run.stream.close()
    s.hosts.close()
    s.writer.shutdown(wait=True)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _files(root: Path) -> tuple[str, str, str]:
    (root / "small.jsonl").write_text(RECORDS)
    (root / "score.py").write_text(SCRIPT)
    untrusted, _ = make_signer(root / "untrusted", "untrusted")
    return str(root / "small.jsonl"), str(root / "score.py"), str(untrusted)


def test_a_refused_submission_is_shown_everywhere_the_user_looks(capsys, world, sched, monkeypatch):  # noqa: F811
    monkeypatch.setenv("COLUMNS", "80")
    data, script, untrusted = _files(world.root)
    assert _run(capsys, "pack", data, script, "--id", "m1", "--signing-key", untrusted, "--submit")[0] == 0
    sched.tick(serve=True)  # takes the submission and refuses it
    assert "m1" not in sched.runs and not Ledger(world.r, "m1").exists()

    code, out, err = _run(capsys, "status", "m1")
    assert code == 4, err
    lines = out.splitlines()
    assert lines[0].startswith("m1  [refused]  the scheduler would not run it: workload m1 is signed by"), out
    assert "not a trusted signer" in out and "unverified" in out and "'rqp submit m1'" in out
    assert "not scheduled yet" not in out
    assert all(len(line) < 80 for line in lines), out  # wrapped to the terminal, nothing clipped

    code, out, _ = _run(capsys, "status", "m1", "--json")
    doc = json.loads(out)
    assert code == 4 and (doc["state"], doc["verified"], doc["code"]) == ("refused", False, 4)
    assert "not a trusted signer" in doc["reason"]

    code, out, _ = _run(capsys, "list")
    row = next(line for line in out.splitlines() if line.startswith("m1 "))
    assert code == 0 and row.split()[1] == "refused*", out
    assert "'rqp status W' says why" in out

    code, out, err = _run(capsys, "submit", "m1")
    assert code == 4 and out == "", err
    assert "workload m1 was refused by the scheduler at" in err and "not a trusted signer" in err
    assert "--again" in err and world.r.llen("rqp:submissions") == 0

    capsys.readouterr()
    code, out, err = _run(capsys, "events", "--queue", "events", "--peek")
    (event,) = [json.loads(x) for x in out.splitlines()]
    assert (event["event"], event["workload"], event["verified"]) == ("refused", "m1", False), out
    assert "not a trusted signer" in event["reason"]

    # the fix: re-packed with the trusted key -- no longer shown refused, and it runs
    assert _run(capsys, "pack", data, script, "--id", "m1", "--replace", "--submit")[0] == 0
    code, _, err = _run(capsys, "status", "m1")
    assert code == 7 and "but not scheduled yet" in err and "[refused]" not in err
    sched.tick(serve=True)
    assert "m1" in sched.runs and world.r.hget(REFUSED, "m1") is None
    code, out, _ = _run(capsys, "status", "m1")
    assert code == 3 and "[running]" in out


def test_submit_again_after_the_scheduler_was_fixed(capsys, world, sched):  # noqa: F811
    data, script, untrusted = _files(world.root)
    assert _run(capsys, "pack", data, script, "--id", "m2", "--signing-key", untrusted, "--submit")[0] == 0
    sched.tick(serve=True)
    code, out, err = _run(capsys, "submit", "m2", "--again")
    assert code == 0 and "submitted m2" in out, err
    assert world.r.hget(REFUSED, "m2") is None  # status waits for the scheduler's new word
    assert world.r.lrange("rqp:submissions", 0, -1) == [b"m2"]


def test_watch_of_a_submission_ends_when_it_is_refused(world, sched):  # noqa: F811
    """``rqp status W --watch`` started while the workload waits for a scheduler ends, exit 4,
    when the scheduler refuses it (it waited forever)."""
    data, script, untrusted = _files(world.root)
    assert main(["pack", data, script, "--id", "m3", "--signing-key", untrusted, "--submit"]) == 0
    watch = subprocess.Popen(
        [bin_path("rqp"), "status", "m3", "--watch", "--interval", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=world.root, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        first = watch.stdout.readline()  # blocks until the watch has looked: waiting
        assert first.startswith("m3  [packed]  waiting for a scheduler"), first
        sched.tick(serve=True)
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
    assert watch.returncode == 4, err
    assert out.startswith("m3  [refused]  the scheduler would not run it"), out


def test_watch_on_an_80_column_terminal_redraws_into_the_refusal(world, sched):  # noqa: F811
    """On a real pseudo-terminal 80 columns wide: the waiting block is redrawn in place into the
    refusal, no line reaches the last column, and nothing of the waiting block is left."""
    data, script, untrusted = _files(world.root)
    assert main(["pack", data, script, "--id", "m4", "--signing-key", untrusted, "--submit"]) == 0
    # the watch has drawn the workload waiting once "[packed]" is on the terminal
    watch = PtyCommand(
        [bin_path("rqp"), "status", "m4", "--watch", "--interval", "0.05"], cwd=world.root, marker=b"[packed]"
    )
    try:
        assert watch.drawn.wait(60), bytes(watch.got)
        sched.tick(serve=True)
        assert watch.wait(60) == 4
    finally:
        watch.close()
    output = watch.output()
    screen = watch.screen()
    assert screen.wrapped == 0, output
    final = screen.text()
    assert final[0].startswith("m4  [refused]  the scheduler would not run it: workload m4 is"), final
    assert "not a trusted signer" in " ".join(final) and not any("waiting" in line for line in final), final
    assert all(len(line) < 80 for line in final), final


@pytest.mark.parametrize("junk", ["string", "list"])
def test_refused_of_another_type_is_junk_shown_as_no_refusal_never_a_traceback(
    capsys,
    world,  # noqa: F811
    cli_env,  # noqa: F811
    monkeypatch,
    junk,
):
    """A Redis writer leaves ``rqp:refused`` as another type: status, list and submit of a packed
    workload go on as if nothing were refused (it is advisory), each without a WRONGTYPE error."""
    monkeypatch.chdir(world.root)
    data, script, _ = _files(world.root)
    assert _run(capsys, "pack", data, script, "--id", "j1")[0] == 0
    if junk == "string":
        world.r.set(REFUSED, "junk")
    else:
        world.r.rpush(REFUSED, "a", "b")

    code, out, err = _run(capsys, "status", "j1")
    assert code == 7 and "[refused]" not in out + err, (out, err)
    code, out, err = _run(capsys, "list")
    assert code == 0 and "j1" in out and "refused" not in out, err
    code, out, err = _run(capsys, "submit", "j1")
    assert code == 0 and "submitted j1" in out, err
    assert world.r.lrange("rqp:submissions", 0, -1) == [b"j1"]
    assert read_refusal(world.r, "j1") is None and refusals(world.r) == {}
    clear_refusal(world.r, "j1")  # the scheduler's start of it: nothing to clear, nothing raised
    assert world.r.type(REFUSED) == (b"string" if junk == "string" else b"list")  # left as it was


@pytest.mark.parametrize("at", ['"nan"', "NaN", '"1e999"', "-Infinity"])
def test_a_refusal_with_a_non_finite_time_reads_as_unreadable(world, at):  # noqa: F811
    world.r.hset(REFUSED, "j2", '{"reason":"forged","code":4,"at":' + at + ',"by":"x","manifest":null}')
    refusal = read_refusal(world.r, "j2")
    assert refusal is not None and refusal.reason == "unreadable refusal entry (not rqp's)" and refusal.at == 0.0
