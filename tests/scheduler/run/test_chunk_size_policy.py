"""The chunk-size policy (``chunk_size_for``): chunks of about ``RQP_CHUNK_TARGET_SECONDS`` of
work, shrinking in the tail so that the workers finish together (issue 28: the last big chunk
left one core idle while the other finished it), but never below ``TAIL_CHUNK_SECONDS`` of work."""

from __future__ import annotations

import heapq

import pytest

from rqp.config import Settings
from rqp_scheduler.run.enqueue import TAIL_CHUNK_SECONDS, chunk_size_for

S = Settings.load(env={})


#: the workers' speeds: on shared cores one always runs a little slower than the other
SPEEDS = (1.0, 0.87)


def _finish_spread(n: int, per_record: float, window: int = 8) -> tuple[float, list[int]]:
    """Two workers taking chunks first in, first out, the scheduler keeping ``window`` queued and
    sizing each as it queues it (as the enqueuer does): how long the first worker to run dry
    waits for the last, and the chunk sizes."""
    workers = len(SPEEDS)
    sizes: list[int] = []
    enqueued = 0

    def queue_one() -> None:
        nonlocal enqueued
        size = min(n - enqueued, chunk_size_for(per_record, S, workers, float(n), enqueued))
        sizes.append(size)
        enqueued += size

    while enqueued < n and len(sizes) < window:
        queue_one()
    free = [(0.0, w) for w in range(workers)]  # (time the worker is free, worker)
    ends = [0.0] * workers
    taken = 0
    while taken < len(sizes):
        t, w = heapq.heappop(free)
        t += sizes[taken] * per_record / SPEEDS[w]
        taken += 1
        ends[w] = t
        heapq.heappush(free, (t, w))
        if enqueued < n:
            queue_one()  # a chunk ended: the window is refilled
    return max(ends) - min(ends), sizes


@pytest.mark.parametrize(("n", "per_record"), [(20_000, 1e-3), (100_000, 100e-6), (40_000, 25e-6)])
def test_the_workers_finish_within_a_tail_chunk_of_each_other(n, per_record):
    spread, sizes = _finish_spread(n, per_record)
    # the old policy's last chunk was a full target's worth (0.25 s): one core idle up to that long
    assert spread <= TAIL_CHUNK_SECONDS / min(SPEEDS), (spread, sizes[-12:])
    assert sum(sizes) == n


@pytest.mark.parametrize(("n", "per_record"), [(20_000, 1e-3), (100_000, 100e-6)])
def test_the_efficiency_workloads_lose_under_one_percent_to_the_tail(n, per_record):
    """The bench's efficiency rows (issue 28): 1 ms x 20,000 and 100 µs x 100,000 records."""
    spread, _ = _finish_spread(n, per_record)
    assert spread / (n * per_record / sum(SPEEDS)) < 0.01


def test_chunks_hold_the_target_until_the_tail_and_never_drop_below_its_floor():
    per_record = 1e-3
    _, sizes = _finish_spread(20_000, per_record)
    target = int(S.chunk_target_seconds / per_record)
    assert sizes[0] == target
    floor = int(TAIL_CHUNK_SECONDS / per_record)
    assert all(s >= floor for s in sizes[:-1]), sizes  # (the very last one takes what is left)
    assert sizes[-2] < target  # the tail shrank


def test_without_an_estimate_the_size_is_the_target_within_bounds():
    assert chunk_size_for(1e-3, S, 2, None, 0) == int(S.chunk_target_seconds / 1e-3)
    assert chunk_size_for(1e-9, S, 2, None, 0) == S.chunk_max
    assert chunk_size_for(10.0, S, 2, None, 0) == S.chunk_min
    assert chunk_size_for(0.0, S, 2, None, 0) == S.chunk_max


#: what a chunk costs its worker besides its records, measured by the bench (issue 28): RQ's job
#: bookkeeping, START, the part upload, COMMIT -- ~13-18 ms of CPU on 2 shared cores
CHUNK_FIXED_CPU = 0.015


@pytest.mark.parametrize("per_record", [1e-3, 10e-3])
def test_a_slow_scripts_chunk_holds_enough_work_that_its_fixed_cost_stays_under_two_percent(per_record):
    """At the former 0.25 s target a 1 ms script paid 6 % of a core for its chunks' fixed cost."""
    size = chunk_size_for(per_record, Settings.load(env={}), 2, None, 0)
    assert CHUNK_FIXED_CPU / (size * per_record) <= 0.02, size
