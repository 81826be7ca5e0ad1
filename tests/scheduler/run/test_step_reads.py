"""What one scheduler step asks of Redis while its chunks are in flight: each step is a few
round trips, and at a slow script's pace (a step every 0.1-0.5 s for many seconds) they are
most of the scheduler's CPU per record (issue 28). The shown control and state are read in one
round trip, not two."""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis_server import RedisServer

N = 30
#: steps measured
STEPS = 10


@pytest.fixture
def redis_url():
    """A Redis server of this test's own (the world's ``r`` and settings use it): the counts are
    the server's, and the session's shared server heard from what an earlier test of the same
    pytest worker left running (a processor's commit watch, now stopped at each test's end by
    ``tests/conftest.py``)."""
    with RedisServer() as server:
        yield server.url


def _calls(r: Any) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}


def test_a_step_reads_the_shown_control_and_state_in_one_round_trip(world):
    wid = world.pack("step-reads", [{"n": i} for i in range(N)])
    run = world.run(wid)
    run.step()
    run.step()  # the window full (no processor takes its chunks), the periodic tasks' first turn done
    before = _calls(world.r)
    for _ in range(STEPS):
        # each periodic task (reclaim each 1 s, progress each 2 s, ...) just done: under load ten
        # steps can take over a second, and a task falling due is not a step's own reads
        run._last.update(dict.fromkeys(run._last, time.monotonic()))
        assert run.step() is False  # no processor: the chunks stay in flight
        run.wait_hint()
    after = _calls(world.r)
    per_step = {k: (after.get(k, 0) - before.get(k, 0)) / STEPS for k in after}
    per_step["info"] = 0  # our own
    assert per_step.get("hmget") == 1, per_step
    assert per_step.get("hget", 0) == 0, per_step
    # LRANGE (signed requests), HMGET (shown control and state), ZCARD (in flight),
    # ZRANGEBYSCORE (retries due): four round trips a step (five before)
    assert sum(per_step.values()) <= 4, per_step
