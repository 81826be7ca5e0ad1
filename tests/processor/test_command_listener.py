"""The worker's command listener outlives errors other than a lost connection.

RQ ends the listener thread on any error but ``redis.ConnectionError``: after a
``redis.TimeoutError`` (Redis paused or slow to answer the listener's health check) the worker
stayed deaf to every command sent to it. These tests make the real listener fail against a real
Redis, then show a command still reaches the worker.
"""

from __future__ import annotations

import logging
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq.command import send_kill_horse_command
from world import world  # noqa: F401 - a fixture

from rqp_processor.worker import RqpWorker, build_worker

#: how long a test waits for the listener to do something it should do at once
WAIT_SECONDS = 15.0
#: what RQ logs when a kill-horse command reaches an idle worker
HEARD = "kill horse command"
#: longer than the listener's wait before it reconnects (PUBSUB_RECONNECT_SECONDS) plus its timeout
#: (shorter than the test client's socket timeout: its commands wait out the pause)
PAUSE_MS = 4000


def _wait(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_SECONDS}s waiting for {what}")
        time.sleep(0.02)


def _heard(caplog: pytest.LogCaptureFixture, what: str) -> bool:
    return any(what in rec.getMessage() for rec in caplog.records)


def _reaches_the_worker(r: redis.Redis, worker: RqpWorker, caplog: pytest.LogCaptureFixture) -> bool:
    """Send kill-horse until the worker logs it (Pub/Sub drops what is sent while it resubscribes)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        send_kill_horse_command(r, worker.name)
        step = time.monotonic() + 0.3
        while time.monotonic() < step:
            if _heard(caplog, HEARD):
                return True
            time.sleep(0.02)
    return False


@pytest.fixture
def listening(world, caplog):  # noqa: F811
    """A real worker whose listener reads over a connection that times out fast (0.3 s) and does
    not retry, so reconnecting to a paused Redis raises ``redis.TimeoutError`` in the listener."""
    caplog.set_level(logging.INFO, logger="rq.worker")
    worker = build_worker(world.settings, name="listener")
    fast = redis.Redis.from_url(
        world.settings.redis_url, socket_timeout=0.3, health_check_interval=1, retry=Retry(NoBackoff(), 0)
    )
    worker.connection = fast
    try:
        worker.subscribe()
        yield worker
    finally:
        worker.unsubscribe()
        fast.close()
        worker.processor.pool.close()


def test_a_command_reaches_the_worker_after_its_listener_timed_out(world, listening, caplog):  # noqa: F811
    r = world.r
    assert _reaches_the_worker(r, listening, caplog), "the listener never heard a command"
    caplog.clear()
    # the listener loses its connection, and reconnects while Redis is paused: its handshake times out
    # (one transaction: paused first, so the listener cannot reconnect before the pause)
    pipe = r.pipeline(transaction=True)
    pipe.execute_command("CLIENT", "PAUSE", str(PAUSE_MS), "ALL")
    pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert pipe.execute()[1] >= 1
    _wait(lambda: _heard(caplog, "Timeout"), "the listener's reconnection to time out")
    assert r.ping()  # answered once the pause is over
    assert _reaches_the_worker(r, listening, caplog), "the worker stopped hearing commands after a timeout"
    assert listening.pubsub_thread.is_alive()


def test_a_malformed_command_does_not_end_the_listener(world, listening, caplog):  # noqa: F811
    r = world.r
    r.publish(listening.pubsub_channel_name, b"not a command")
    _wait(lambda: any(rec.levelno >= logging.WARNING for rec in caplog.records), "the listener to report the message")
    assert _reaches_the_worker(r, listening, caplog), "the worker stopped hearing commands after a bad one"


def test_a_listener_that_ended_is_started_again_at_the_next_heartbeat(world, listening, caplog):  # noqa: F811
    r = world.r
    old = listening.pubsub_thread
    old.stop()  # as if an error had escaped the listener's own handler
    old.join(10)
    assert not old.is_alive()
    listening.heartbeat()  # RQ's loops beat on every pass, an idle worker's included
    assert listening.pubsub_thread is not old and listening.pubsub_thread.is_alive()
    assert _reaches_the_worker(r, listening, caplog), "the worker stopped hearing commands after its listener ended"
