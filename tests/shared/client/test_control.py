"""The control actions on ``rqp.Workload``, signed as the CLI signs them (``rqp.oplog``), and
``wait`` with its progress bar; ``rqp.AsyncClient`` over the same client."""

from __future__ import annotations

import asyncio

import pytest

import rqp
from rqp.control import audit
from rqp.ledger import Ledger, WorkloadKeys

SCRIPT = "def process(r):\n    if r['n'] == 2:\n        raise ValueError('two')\n    return r['n']\n"


def test_pause_resume_cancel_are_signed_requests_in_the_audit_log(client, world, proc, operator, signer):
    w = client.submit([{"n": i} for i in range(30)], SCRIPT, id="ctl")
    run = world.run(w.id)
    assert w.pause() == "paused" and w.status().state == "paused"
    assert w.resume() == "running"
    assert w.set_priority("low") == "low"
    assert w.cancel() == "cancelling"
    world.run_to_end(run, proc)
    assert w.status().state == "cancelled"
    entries = audit(world.r, operator.trust, signer.trust)
    assert [e.what for e in entries][:4] == ["cancel", "priority low", "resume", "pause"]
    assert all(e.verified for e in entries)
    with pytest.raises(rqp.WorkloadError, match="only a workload that is running or paused can be cancelled"):
        w.cancel()


def test_retry_failed_and_delete(client, world, proc, run_to_end):
    w = client.submit([{"n": i} for i in range(4)], SCRIPT, id="again")
    run_to_end(w.id)
    assert w.retry_failed() == 1
    assert w.status().state == "running"
    world.run_to_end(world.run(w.id), proc)
    assert [f.id for f in w.failures()] == [2]  # still failing: the script is the same
    keys, blobs = w.delete(shred=True)
    assert keys > 0 and blobs > 0
    assert not Ledger(world.r, w.id).exists()
    with pytest.raises(rqp.WorkloadError):
        client.workload(w.id)


def test_delete_refuses_a_running_workload(client, world):
    w = client.submit([{"n": 1}], SCRIPT, id="busy")
    world.run(w.id)
    with pytest.raises(rqp.WorkloadError, match="cancel it first"):
        w.delete()


def test_wait_draws_a_bar_and_times_out_with_one_line(client, world, capsys):
    pytest.importorskip("tqdm")
    w = client.submit([{"n": 1}], SCRIPT, id="slow")
    world.run(w.id)
    with pytest.raises(rqp.WaitTimeoutError, match=r"workload slow had not ended in time \(running: 0 done"):
        w.wait(timeout=0.05)
    assert "slow" in capsys.readouterr().err  # the bar, on stderr
    with pytest.raises(TimeoutError):  # also a TimeoutError, as concurrent.futures users expect
        w.wait(timeout=0, progress=False)
    assert capsys.readouterr() == ("", "")


def test_an_unknown_state_from_a_newer_scheduler_ends_a_wait(client, world, run_to_end):
    """Another scheduler version may add states (e.g. one that refused the workload): the
    snapshot carries them as they are and a wait does not poll forever."""
    w = client.submit([{"n": 1}], SCRIPT, id="newer")
    world.run(w.id)
    world.r.hset(WorkloadKeys(w.id).meta, "state", "refused")
    s = w.wait(timeout=5, progress=False)
    assert (s.state, s.ended) == ("refused", True)


def test_a_made_up_state_does_not_end_a_wait_and_is_shown_unverified(client, world):
    """A Redis writer's state no version knows (with forged counts) must not end ``wait``: it
    keeps waiting until its timeout, and the snapshot says its counts are unverified."""
    w = client.submit([{"n": 1}, {"n": 3}], SCRIPT, id="forged")
    world.run(w.id)
    keys = WorkloadKeys(w.id)
    world.r.hset(keys.meta, "state", "zzz")
    s = w.status()
    assert (s.state, s.ended, s.verified) == ("zzz", False, False)
    with pytest.raises(rqp.WaitTimeoutError, match="zzz"):
        w.wait(timeout=0.3, progress=False, poll=0.05)
    world.r.hset(keys.meta, "state", "done")  # a forged done: no sealed summary opens for it yet
    with pytest.raises(rqp.WaitTimeoutError):
        w.wait(timeout=0.3, progress=False, poll=0.05)
    assert w.status().verified is False


@pytest.mark.timeout(120)  # a stream that held the client's lock would deadlock on the status inside it
def test_async_client_runs_the_client_in_a_thread(world, proc, run_to_end):
    async def main() -> tuple[list[int], str, list[int]]:
        async with rqp.AsyncClient(
            redis_url=world.settings.redis_url,
            blob_url=world.settings.blob_url,
            kek_file=str(world.settings.kek_file),
            allow_insecure_redis=True,
        ) as ac:
            w = await ac.submit([{"n": i} for i in range(6)], SCRIPT, id="async")
            await asyncio.to_thread(run_to_end, w.id)
            status = await w.wait(timeout=5)
            streamed = []
            async for x in w.stream():
                streamed.append(x["id"])
                assert (await w.status()).state == "done"  # other calls go on while it streams
            streamed.sort()
            results = [x["id"] async for x in w.results()]
            return streamed, status.state, results

    streamed, state, results = asyncio.run(main())
    assert state == "done"
    assert streamed == results == [0, 1, 3, 4, 5]


def test_failures_of_a_running_workload_so_far_through_the_client_and_the_cli(client, world, proc, capsys, monkeypatch):
    """One reader of a running workload's failures for both (``rqp.results.failures_so_far``);
    the script's ``from rqp import PermanentError`` loads none of the client in its sandbox."""
    from rqp.cli import main

    script = (
        "from rqp import PermanentError\n\n"
        "def process(r):\n"
        "    if r['n'] == 1:\n"
        "        raise PermanentError('one is refused')\n"
        "    return r['n']\n"
    )
    w = client.submit([{"n": i} for i in range(30)], script, id="partial")
    run = world.run(w.id)
    run.step()
    world.work(proc)
    assert w.status().state == "running"
    [failure] = w.failures()
    assert failure.id == 1 and "one is refused" in (failure.error or "")
    for name, value in {
        "RQP_REDIS_URL": world.settings.redis_url,
        "RQP_BLOB_URL": world.settings.blob_url,
        "RQP_ALLOW_INSECURE_REDIS": "true",
        "RQP_KEK_FILE": str(world.settings.kek_file),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["results", w.id, "--failed"]) == 0
    out, err = capsys.readouterr()
    assert '"id":1,' in out and "one is refused" in out
    assert "1 records failed so far (not final)" in err
