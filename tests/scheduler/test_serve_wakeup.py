"""A serving scheduler takes an announced submission at once, not at its next look (issue 28
item 4: ``rqp submit`` -> first record). ``rqp submit`` pushes the id, then PUBLISHes on
``rqp:submitted``; the scheduler's listener wakes its loop. The looks stay the hand-over's
safety net, a stop wakes the loop too, and a flood of announcements cannot make it spin. A
service that idles starts the next workload's script host ahead, so its script check does not
wait for an interpreter to start."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from world import world  # noqa: F401 - fixture

import rqp_scheduler.scheduler as scheduler_module
from rqp import sandbox
from rqp.ledger import SUBMISSIONS, SUBMITTED_CHANNEL, announce_submission, submit
from rqp_scheduler.scheduler import Scheduler
from rqp_scheduler.wakeup import WAKE_MIN_GAP

#: the looks made rare, so only the announcement can explain a prompt pickup
SLOW_LOOK = 30.0


@pytest.fixture
def serving(world, monkeypatch) -> Iterator[tuple[Scheduler, threading.Thread]]:  # noqa: F811
    monkeypatch.setattr(scheduler_module, "WAIT_IDLE_SERVING", SLOW_LOOK)
    sched = Scheduler(world.settings)
    loop = threading.Thread(target=sched.loop, kwargs={"serve": True}, daemon=True)
    loop.start()
    deadline = time.monotonic() + 10
    while sched.listener is None or not sched.listener.subscribed.is_set():
        assert time.monotonic() < deadline, "the listener never subscribed"
        time.sleep(0.005)
    try:
        yield sched, loop
    finally:
        sched.stop.set()
        loop.join(10)
        sched.hosts.close()


def _taken_within(r, seconds: float) -> float:
    t0 = time.monotonic()
    while r.llen(SUBMISSIONS):
        assert time.monotonic() - t0 < seconds, f"the submission was not taken within {seconds}s"
        time.sleep(0.002)
    return time.monotonic() - t0


def test_an_announced_submission_is_taken_at_once_not_at_the_next_look(world, serving):  # noqa: F811
    waits = []
    for k in range(3):
        submit(world.r, f"never-packed-{k}")  # an id no workload has: refused, which empties the list
        assert announce_submission(world.r)
        waits.append(_taken_within(world.r, 5.0))  # the next look is 30 s away
    assert max(waits) < 1.0, waits


def test_a_stop_wakes_the_idle_loop_at_once(serving):
    sched, loop = serving
    t0 = time.monotonic()
    sched.stop.set()
    loop.join(5)
    assert not loop.is_alive() and time.monotonic() - t0 < 2.0  # not the 30 s wait


def test_a_flood_of_announcements_costs_a_bounded_number_of_looks(world, serving):  # noqa: F811
    def llen_calls() -> int:
        return int(world.r.info("commandstats").get("cmdstat_llen", {}).get("calls", 0))

    before, t0 = llen_calls(), time.monotonic()
    pipe = world.r.pipeline(transaction=False)
    for _ in range(3000):
        pipe.publish(SUBMITTED_CHANNEL, b"junk")
    pipe.execute()
    time.sleep(0.3)  # the flood's wake-ups are spent meanwhile (what is measured is what they cost)
    looks = llen_calls() - before
    assert looks <= (time.monotonic() - t0) / WAKE_MIN_GAP + 5, looks  # never one look per message


def test_a_flood_of_announcements_does_not_step_the_running_workloads(world, serving):  # noqa: F811
    """A wake-up takes the submissions and steps only what it added: a running workload keeps its
    own wait between steps (the twelfth review, F1: under ~450 PUBLISH/s every running workload
    was stepped at each wake-up, 4.6x the scheduler's CPU)."""
    sched, _loop = serving
    wid = world.pack("flooded", [{"n": i} for i in range(40)])
    submit(world.r, wid)
    assert announce_submission(world.r)
    deadline = time.monotonic() + 10
    while wid not in sched.runs:
        assert time.monotonic() < deadline, "the submission was never taken"
        time.sleep(0.005)
    run = sched.runs[wid]
    steps: list[float] = []
    step = run.step

    def counted() -> bool:
        steps.append(time.monotonic())
        return step()

    run.wait_hint = lambda: 2.0  # type: ignore[method-assign]  # a workload whose next step is 2 s away
    run.step = counted  # type: ignore[method-assign]  # (after: every step counted is followed by the 2 s)
    while not steps:  # the step after which the loop waits the 2 s
        assert time.monotonic() < deadline, "the workload was never stepped"
        time.sleep(0.005)
    first = len(steps)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:  # ~50 wake-ups' worth of announcements
        world.r.publish(SUBMITTED_CHANNEL, b"junk")
        time.sleep(0.002)
    assert len(steps) - first <= 1, [round(s - t0, 3) for s in steps]  # not one step per wake-up


def test_without_the_channel_the_looks_still_take_it(world, monkeypatch):  # noqa: F811
    monkeypatch.setattr(scheduler_module, "WAIT_IDLE_SERVING", 0.05)
    sched = Scheduler(world.settings)
    loop = threading.Thread(target=sched.loop, kwargs={"serve": True}, daemon=True)
    loop.start()
    try:
        submit(world.r, "never-packed")  # pushed, never announced (an older client)
        _taken_within(world.r, 5.0)
    finally:
        sched.stop.set()
        loop.join(10)
        sched.hosts.close()


def test_an_idle_service_starts_a_spare_script_host_for_the_next_workload(world, monkeypatch):  # noqa: F811
    if not sandbox.SandboxConfig.from_settings(world.settings).enabled:
        pytest.skip("the sandbox is off here: no script hosts")
    monkeypatch.setattr(scheduler_module, "SPARE_AFTER_IDLE", 0.05)
    monkeypatch.setattr(scheduler_module, "WAIT_IDLE_SERVING", 0.02)
    sched = Scheduler(world.settings)
    sched.hosts.take("taken-before").close()  # the spare of its start is gone, as after a workload
    assert sched.hosts.wants_spare
    loop = threading.Thread(target=sched.loop, kwargs={"serve": True}, daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while sched.hosts.wants_spare:
            assert time.monotonic() < deadline, "an idle service never started a spare script host"
            time.sleep(0.01)
        started = sched.hosts.started
        world.pack("w", [{"n": 1}])
        sched.stop.set()
        loop.join(10)
        sandbox.check_script(sched.hosts, "w", b"def process(r):\n    return r\n")
        assert sched.hosts.started == started  # the check ran in the spare: no host started for it
    finally:
        sched.stop.set()
        loop.join(10)
        sched.hosts.close()
