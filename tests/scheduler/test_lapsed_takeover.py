"""A serving scheduler takes over a workload whose lock lapsed (its scheduler -- a one-off
``rqp-scheduler run``, a notebook's -- is gone), and never one whose scheduler lives.

Before, such a workload stayed "running" until the service restarted or someone submitted it
again; and the first fix took over workloads still being supervised, because a lock was renewed
only between steps (the eleventh review, F2). Now the lock is renewed by a thread and every write
of a run is fenced by it (``tests/scheduler/run/test_lock.py``)."""

from __future__ import annotations

import logging

import pytest
from world import proc, world  # noqa: F401 - fixtures

from rqp.ledger import Ledger, Meta, submit
from rqp.workload import blob_name
from rqp_scheduler.run.lock import LockLost
from rqp_scheduler.scheduler import LAPSED_LOOK_SECONDS, Scheduler


def _state(world, wid: str) -> tuple[str, int, int]:  # noqa: F811
    snap = Ledger(world.r, wid).snapshot()
    return snap["meta"].get(Meta.STATE, ""), snap["done"], snap["failed"]


@pytest.fixture
def sched(world):  # noqa: F811
    s = Scheduler(world.settings)
    yield s
    s.hosts.close()


def test_a_workload_whose_scheduler_is_gone_is_taken_over_and_ends_exactly(world, proc, sched, monkeypatch, caplog):  # noqa: F811
    wid = world.pack("orphan", [{"n": n} for n in range(10)])
    gone = world.run_as(monkeypatch, wid, "notebook-host:4242")  # a one-off run on another host
    gone.step()
    world.work(proc)
    submit(world.r, wid)  # submitted to the service too: another scheduler holds it
    with caplog.at_level(logging.INFO, logger="rqp.scheduler"):
        sched.tick(serve=True)
    assert wid not in sched.runs and wid in sched.elsewhere
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a lock held elsewhere is no error"
    assert sched.take_lapsed() == []  # its scheduler lives (the lock is there): left alone
    world.r.delete(Ledger(world.r, wid).k.lock)  # ...until its lock lapses: the notebook is gone
    assert sched.take_lapsed() == [wid]
    run = sched.runs[wid]
    world.run_to_end(run, proc)
    assert _state(world, wid) == ("done", 10, 0)
    gone.step()  # the one-off run comes back from the dead...
    with pytest.raises(LockLost):
        gone.finisher.fail("it thinks it failed", generic="it thinks it failed")  # ...and writes nothing
    assert _state(world, wid) == ("done", 10, 0)


def test_the_service_looks_on_its_own_every_lapsed_look(world, proc, sched, monkeypatch):  # noqa: F811
    wid = world.pack("looked", [{"n": n} for n in range(4)])
    world.run_as(monkeypatch, wid, "vm-gone:1")
    world.r.delete(Ledger(world.r, wid).k.lock)
    sched._next_lapsed_look = 0.0  # the look is due (it comes every LAPSED_LOOK_SECONDS)
    sched.tick(serve=True)
    assert wid in sched.runs
    assert sched._next_lapsed_look > 0 and LAPSED_LOOK_SECONDS <= 10


def test_a_workload_that_could_not_be_opened_is_not_tried_again_every_look(world, sched, monkeypatch):  # noqa: F811
    wid = world.pack("unopenable", [{"n": 1}])
    world.run_as(monkeypatch, wid, "vm-gone:1")
    world.r.delete(Ledger(world.r, wid).k.lock)
    world.store.delete(blob_name(wid, "manifest.json"))  # its manifest gone: it cannot be opened
    assert sched.take_lapsed() == [wid]
    assert wid in sched.failures and wid not in sched.runs
    assert sched.take_lapsed() == []  # said once; a submission or a restart tries again


PARSED = (
    "def parse(stream):\n    for part in stream.read().decode().split(';'):\n"
    "        k, v = part.split('=')\n        yield {'k': k, 'v': int(v)}\n\n"
    "def process(r):\n    return r['k'] * r['v']\n"
)


def test_a_run_dropped_for_a_lost_lock_ends_its_parse_host(world, sched, monkeypatch):  # noqa: F811
    """The eleventh review, F3: a run dropped because another scheduler took its lock kept the
    script host its ``parse()`` ran in."""
    from rqp.workload import pack

    data = world.root / "p.txt"
    data.write_bytes(b";".join(b"k%d=%d" % (i, i) for i in range(200)))  # more than one window: parse() is mid-way
    (world.root / "p.py").write_text(PARSED)
    pack(world.store, world.keys, "parsing", data, world.root / "p.py", fmt="script", signer=world.signer.key)
    submit(world.r, "parsing")
    sched.tick(serve=True)
    run = sched.runs["parsing"]
    parser = run.stream._parser
    assert parser is not None, "parse() should be under way"
    world.r.delete(Ledger(world.r, "parsing").k.lock)
    world.run_as(monkeypatch, "parsing", "other-host:7")  # taken over while this one was paused
    sched.tick(serve=True)
    assert "parsing" not in sched.runs and "parsing" in sched.elsewhere
    assert run.stream._parser is None
    with pytest.raises(StopIteration):
        next(parser)  # closed: its host ended


def test_an_ended_workload_forged_running_is_opened_once_not_every_look(world, proc, sched, monkeypatch):  # noqa: F811
    """The thirteenth review, F1: a Redis writer's "running" on an ended workload made every look
    open it again (signature, key unwrap, a rejection recorded, three log lines)."""
    wid = world.pack("ended", [{"n": n} for n in range(4)])
    run = world.run(wid)
    world.run_to_end(run, proc)
    world.r.hset(Ledger(world.r, wid).k.meta, Meta.STATE, "running")  # forged
    assert sched.take_lapsed() == [wid]  # opened, found ended (its sealed head is closed)
    assert wid in sched.summaries and wid not in sched.runs
    assert sched.take_lapsed() == []  # not again


def test_each_look_reads_a_bounded_window_of_the_workload_list(world, sched, monkeypatch):  # noqa: F811
    """The thirteenth review, F6: each look read all of rqp:workloads (200,000 entries: 2.4 s of
    CPU every 10 s). Now a window of it, in turn: an orphan far down the list is still found."""
    from rqp_scheduler import scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "LAPSED_LOOK_BATCH", 3)
    for k in range(7):  # listed before it: ended or junk ids (the list is by submission time)
        world.r.zadd("rqp:workloads", {f"old-{k}": k})
    wid = world.pack("far-down", [{"n": 1}])
    world.run_as(monkeypatch, wid, "vm-gone:1")
    world.r.zadd("rqp:workloads", {wid: 100})
    world.r.delete(Ledger(world.r, wid).k.lock)
    looks = [sched.take_lapsed() for _ in range(3)]
    assert looks == [[], [], [wid]]  # 8 listed, 3 a look: the third look reaches it
    assert sched.take_lapsed() == []  # the next look starts again from the top


def test_a_run_dropped_for_its_error_is_no_longer_renewed(world, sched, monkeypatch):  # noqa: F811
    """The process's keeper renews every lock taken and not released: a run dropped for an error
    that released nothing would have kept its lock for good, and no serving scheduler could take
    the workload over. Dropped, its lock is released (or, Redis away, left to lapse)."""
    from rqp.errors import IntegrityError
    from rqp_scheduler.run.lock import held_locks

    wid = world.pack("dropped", [{"n": n} for n in range(8)])
    sched.add(wid)
    run = sched.runs[wid]
    assert run.lock in held_locks()

    def broken() -> None:
        raise IntegrityError("a state that does not add up")

    monkeypatch.setattr(run, "step", broken)
    sched.tick(serve=True)
    assert wid not in sched.runs and wid in sched.failures
    assert run.lock not in held_locks() and not world.r.exists(Ledger(world.r, wid).k.lock)
