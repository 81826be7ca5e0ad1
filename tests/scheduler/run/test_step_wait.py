"""How long the scheduler's loop blocks between steps (``step_wait``): a step costs ~0.5-1 ms of
CPU, so with a slow script (1 ms per record) stepping every 0.1 s while the window was full, and
through the tail of queued chunks, cost the scheduler ~10-20 µs per record -- a cost per second,
not per chunk (issue 28). The waits now follow the chunks' time, and the end is still seen soon."""

from __future__ import annotations

import pytest

from rqp_scheduler.run.enqueue import WINDOW_PER_WORKER
from rqp_scheduler.run.workload_run import (
    WAIT_ENQUEUING,
    WAIT_EXHAUSTED,
    WAIT_WINDOW_FULL_MAX,
    step_wait,
)


def _wait(exhausted: bool = False, window_full: bool = False, in_flight: int = 0, chunk_seconds: float = 1.0) -> float:
    return step_wait(
        exhausted=exhausted, window_full=window_full, in_flight=in_flight, workers=2, chunk_seconds=chunk_seconds
    )


def test_a_full_window_of_one_second_chunks_is_looked_at_twice_a_second_not_ten_times():
    assert _wait(window_full=True, chunk_seconds=1.0) == WAIT_WINDOW_FULL_MAX == 0.5


def test_the_tail_of_queued_slow_chunks_is_not_stepped_through_every_100_ms():
    assert _wait(exhausted=True, in_flight=16, chunk_seconds=1.0) == WAIT_WINDOW_FULL_MAX


def test_the_end_is_seen_within_100_ms_once_at_most_two_chunks_per_worker_are_left():
    assert _wait(exhausted=True, in_flight=4, chunk_seconds=1.0) == WAIT_EXHAUSTED == 0.1
    assert _wait(exhausted=True, in_flight=0, chunk_seconds=1.0) == WAIT_EXHAUSTED


@pytest.mark.parametrize("chunk_seconds", [0.0, 0.01, 0.05, 0.2, 1.0, 30.0])
def test_a_full_window_never_runs_dry_between_two_steps(chunk_seconds):
    """A full window holds ``WINDOW_PER_WORKER`` chunks per worker: the loop looks again before
    a worker could finish them (and never less often than ``WAIT_WINDOW_FULL_MAX``)."""
    wait = _wait(window_full=True, chunk_seconds=chunk_seconds)
    assert wait <= max(WAIT_EXHAUSTED, WINDOW_PER_WORKER * chunk_seconds / 2)
    assert wait <= WAIT_WINDOW_FULL_MAX


def test_while_records_wait_to_be_queued_the_loop_steps_at_once():
    assert _wait(chunk_seconds=1.0) == WAIT_ENQUEUING == 0.02
