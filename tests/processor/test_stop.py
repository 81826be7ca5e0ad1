"""A worker stops at once: RQ's command-channel listener used to block 60 s per read, and redis-py
8 waits for that read when the listener is stopped, so a worker told to stop just after its
unsubscribe was answered sat out the supervisor's grace period and was killed (seen in
``make test-images``: "the processor took 20.6s to stop")."""

from __future__ import annotations

import time

from world import world  # noqa: F401 - fixture

from rqp_processor.worker import build_worker


def test_unsubscribing_never_waits_for_a_long_read(world):  # noqa: F811
    worker = build_worker(world.settings, name="stopper")
    try:
        worker.subscribe()
        worker.pubsub.unsubscribe()  # the reply comes back; the listener reads it and reads again
        deadline = time.monotonic() + 10
        while worker.pubsub.subscribed and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the listener's own state, not a wait for a guessed time
        assert not worker.pubsub.subscribed
        started = time.monotonic()
        worker.unsubscribe()
        assert time.monotonic() - started < 2.0
    finally:
        worker.processor.pool.close()
