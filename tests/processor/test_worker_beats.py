"""RQ's worker beats and state writes cost one round trip, and a repeat within a second none.

RQ sends a beat as three writes (the worker hash's ``last_heartbeat``, two expiries), each its own
round trip when it has no pipeline, and beats and writes "idle" twice back to back around every
dequeue: ~10 round trips per chunk that said nothing new (issue 28: a worker's cost per chunk).
These tests run against a real Redis and read what it received.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from world import world  # noqa: F401 - a fixture

from rqp_processor import worker as worker_module
from rqp_processor.worker import RqpWorker, build_worker


@pytest.fixture
def rqp_worker(world) -> Iterator[RqpWorker]:  # noqa: F811
    w = build_worker(world.settings, name="beats")
    w.register_birth()
    try:
        yield w
    finally:
        w.register_death()
        w.processor.pool.close()


def _reads(r: redis.Redis) -> int:
    """Requests Redis has read from all its clients (this INFO call's own included)."""
    return int(r.info("stats")["total_reads_processed"])


def _calls(r: redis.Redis, command: str) -> int:
    return int(r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_beat_is_one_round_trip(world, rqp_worker: RqpWorker, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    r = world.r
    monkeypatch.setattr(worker_module, "BEAT_REPEAT_SECONDS", 0.0)  # every beat goes out
    before = _reads(r)
    rqp_worker.heartbeat()
    after = _reads(r)
    assert after - before == 2  # the beat (three writes in one request), and the second INFO
    assert r.hget(rqp_worker.key, "last_heartbeat")
    assert 0 < r.ttl(rqp_worker.key) <= rqp_worker.worker_ttl + 60


def test_a_repeated_beat_within_a_second_is_not_sent(world, rqp_worker: RqpWorker, monkeypatch) -> None:  # noqa: F811
    r = world.r
    monkeypatch.setattr(worker_module, "BEAT_REPEAT_SECONDS", 3600.0)  # "within": however slow this machine
    rqp_worker.heartbeat()
    r.hdel(rqp_worker.key, "last_heartbeat")
    expires = _calls(r, "expire")
    rqp_worker.heartbeat()
    assert r.hget(rqp_worker.key, "last_heartbeat") is None
    assert _calls(r, "expire") == expires
    # a beat asking another TTL goes out
    rqp_worker.heartbeat(rqp_worker.worker_ttl + 600)
    assert r.hget(rqp_worker.key, "last_heartbeat")
    assert r.ttl(rqp_worker.key) > rqp_worker.worker_ttl + 60


def test_a_beat_after_one_in_a_job_transaction_is_sent(world, rqp_worker: RqpWorker, monkeypatch) -> None:  # noqa: F811
    """RQ beats inside the transaction that starts a job (with the job's TTL); the next beat on
    its own, after the job, restores the worker's TTL and must reach Redis."""
    r = world.r
    monkeypatch.setattr(worker_module, "BEAT_REPEAT_SECONDS", 3600.0)
    rqp_worker.heartbeat()
    with r.pipeline() as pipe:
        rqp_worker.heartbeat(7200, pipeline=pipe)
        pipe.execute()
    assert r.ttl(rqp_worker.key) > 3600
    rqp_worker.heartbeat()
    assert 0 < r.ttl(rqp_worker.key) <= rqp_worker.worker_ttl + 60


def test_a_repeated_state_write_is_not_sent(world, rqp_worker: RqpWorker, monkeypatch) -> None:  # noqa: F811
    r = world.r
    monkeypatch.setattr(worker_module, "BEAT_REPEAT_SECONDS", 3600.0)
    rqp_worker.set_state("idle")
    assert r.hget(rqp_worker.key, "state") == b"idle"
    r.hset(rqp_worker.key, "state", "marker")
    rqp_worker.set_state("idle")  # RQ: after a job, then again before the next dequeue
    assert r.hget(rqp_worker.key, "state") == b"marker"
    rqp_worker.set_state("busy")  # a change always goes out
    assert r.hget(rqp_worker.key, "state") == b"busy"
    with r.pipeline() as pipe:
        rqp_worker.set_state("idle", pipeline=pipe)
        pipe.execute()
    r.hset(rqp_worker.key, "state", "marker")
    rqp_worker.set_state("idle")  # the one in a transaction does not stand in for it
    assert r.hget(rqp_worker.key, "state") == b"idle"


def test_rqs_suspension_check_beat_does_not_undo_the_saving(world, rqp_worker: RqpWorker, monkeypatch) -> None:  # noqa: F811
    """RQ's loop checks for ``rq suspend`` on every pass with a beat in the same pipeline (its
    default TTL): that beat is written, and the back-to-back beats around the dequeue still are not."""
    from rq.suspension import is_suspended

    r = world.r
    monkeypatch.setattr(worker_module, "BEAT_REPEAT_SECONDS", 3600.0)
    rqp_worker.heartbeat()
    r.hdel(rqp_worker.key, "last_heartbeat")
    assert not is_suspended(r, rqp_worker)
    assert r.hget(rqp_worker.key, "last_heartbeat")  # the check's own beat went out
    r.hdel(rqp_worker.key, "last_heartbeat")
    rqp_worker.heartbeat()
    assert r.hget(rqp_worker.key, "last_heartbeat") is None
