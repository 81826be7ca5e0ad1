"""Finding the Redis primary through Sentinel: the settings, and a real failover under a client."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis
from rq import Queue
from rq.command import send_shutdown_command
from rq.job import Job
from sentinel_group import SERVICE, SentinelGroup, wait_until

from rqp.config import Settings
from rqp.connect import connect_redis
from rqp.errors import ConfigError, RedisUnavailableError
from rqp.sentinel import SentinelTarget, parse_sentinel_url


def test_a_sentinel_url_names_the_sentinels_the_service_the_database_and_tls():
    t = parse_sentinel_url("rediss+sentinel://rqp-scheduler@10.0.0.4:26380,10.0.0.5,[fd00::6]:26379/rqp/2")
    assert t == SentinelTarget(
        sentinels=(("10.0.0.4", 26380), ("10.0.0.5", 26379), ("fd00::6", 26379)),
        service="rqp",
        db=2,
        tls=True,
        username="rqp-scheduler",
    )
    assert parse_sentinel_url(t.url()) == t


def test_sentinels_and_service_settings_take_scheme_user_and_database_from_the_redis_url():
    s = Settings.from_mapping(
        {
            "redis_url": "rediss://rqp-processor@ignored:6379/3",
            "redis_sentinels": "a:1, b:2",
            "redis_service": "rqp",
        }
    )
    assert s.redis_sentinel == SentinelTarget((("a", 1), ("b", 2)), "rqp", 3, True, "rqp-processor")
    assert s.redis_url_safe == "rediss+sentinel://rqp-processor@a:1,b:2/rqp/3"
    assert Settings().redis_sentinel is None


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"redis_url": "redis+sentinel://a:1/"}, "names no service"),
        ({"redis_url": "redis+sentinel://u:pw@a:1/rqp"}, "RQP_REDIS_PASSWORD_FILE"),
        ({"redis_url": "redis+sentinel://a:x/rqp"}, "no valid port"),
        ({"redis_url": "redis+sentinel://a:1/rqp/zero"}, "database number"),
        ({"redis_sentinels": "a:1"}, "RQP_REDIS_SERVICE is not"),
        ({"redis_service": "rqp"}, "RQP_REDIS_SENTINELS is not"),
        ({"redis_url": "redis+sentinel://a:1/rqp", "redis_sentinels": "a:1", "redis_service": "rqp"}, "once"),
        ({"leader_lease_seconds": 0}, "RQP_LEADER_LEASE_SECONDS"),
    ],
)
def test_a_half_or_doubly_named_sentinel_setup_is_refused_in_one_line(values, says):
    with pytest.raises(ConfigError, match=says) as info:
        Settings.from_mapping(values)
    assert "\n" not in str(info.value)


def test_the_consoles_actions_user_may_find_the_primary_through_sentinel_too():
    from rqp_console.settings import ConsoleSettings

    url = "rediss+sentinel://console-actions@a:26379,b:26379/rqp/0"
    assert ConsoleSettings(actions_redis_url=url).actions_redis_url == url
    with pytest.raises(ConfigError, match="redis\\+sentinel://"):
        ConsoleSettings(actions_redis_url="http://a/rqp")


def test_no_sentinel_answering_fails_the_start_in_one_line_naming_the_service():
    s = Settings.from_mapping({"redis_url": "redis+sentinel://127.0.0.1:1/rqp", "allow_insecure_redis": True})
    with pytest.raises(RedisUnavailableError) as info:
        connect_redis(s)
    assert str(info.value) == (
        "cannot reach Redis at redis+sentinel://127.0.0.1:1/rqp/0 (no Sentinel answered); "
        "start the Sentinels or fix RQP_REDIS_URL"
    )


@pytest.fixture(scope="module")
def group():
    g = SentinelGroup().start()
    yield g
    g.stop()


WORKER = """
import sys
from rq import Queue, SimpleWorker
from rqp.config import Settings
from rqp.connect import connect_redis
from rqp_processor.worker import RqpWorker

class Worker(SimpleWorker):
    subscribe = RqpWorker.subscribe  # rqp's command listener (it wakes every 0.5 s, RQ's every 60 s)

r = connect_redis(Settings.from_mapping({"redis_url": sys.argv[1], "allow_insecure_redis": True}))
w = Worker([Queue("t", connection=r)], connection=r, name="sentinel-worker")
w.work(with_scheduler=False, logging_level="INFO")
print("worker stopped", flush=True)
"""


def test_clients_and_an_rq_worker_follow_a_failover_by_themselves(group, tmp_path):
    """One test, one failover (they take seconds): the role's client, RQ's blocking dequeue and
    RQ's pubsub command listener all reach the promoted replica without being restarted."""
    settings = Settings.from_mapping(
        {"redis_sentinels": group.sentinels_setting, "redis_service": SERVICE, "allow_insecure_redis": True}
    )
    r = connect_redis(settings)
    r.set("before", "1")
    assert r.connection_pool.get_master_address() == ("127.0.0.1", group.primary.port)
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, group.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        q = Queue("t", connection=r)
        first = q.enqueue("builtins.len", "abc")
        wait_until(lambda: Job.fetch(first.id, connection=r).get_status() == "finished", 30, "the first job")
        assert r.wait(1, 5000) == 1  # the replica has everything so far
        group.kill_primary()
        group.wait_failover()

        assert r.get("before") == b"1"  # the same client, now on the promoted replica
        r.set("after", "2")
        assert group.replica.client().get("after") == b"2"
        second = Queue("t", connection=r).enqueue("builtins.len", "abcd")
        wait_until(lambda: Job.fetch(second.id, connection=r).get_status() == "finished", 60, "a job after failover")
        assert Job.fetch(second.id, connection=r).return_value() == 4

        # RQ's pubsub listener resubscribed on the new primary: a shutdown command reaches it
        deadline = time.monotonic() + 30
        while worker.poll() is None and time.monotonic() < deadline:
            send_shutdown_command(r, "sentinel-worker")
            try:
                worker.wait(1)
            except subprocess.TimeoutExpired:
                pass
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        out = worker.stdout.read().decode()
        assert worker.returncode == 0, out
        assert "Received shutdown command" in out and "worker stopped" in out
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        r.close()
    assert isinstance(r, redis.Redis)
