"""A role's start rides out a Redis name that fails to resolve *temporarily* (EAI_AGAIN).

A container network's DNS (podman's aardvark-dns) answers so while it reloads, which it does
whenever any container on the host starts or stops: the console of a CI run's Compose stack
crashed on it with a traceback (in the check that Redis refuses clients without a password) and
was restarted. The resolver's answers are replaced here (``socket.getaddrinfo``); the Redis
servers are real.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import redis
from redis_server import RedisServer

from rqp import connect
from rqp.config import Settings
from rqp.errors import RedisUnavailableError


def _lookups_failing(monkeypatch: pytest.MonkeyPatch, failing: set[int]) -> list[int]:
    """``socket.getaddrinfo`` failing with EAI_AGAIN on the lookups numbered in ``failing`` (from 1);
    returns the count of lookups made."""
    real = socket.getaddrinfo
    made = [0]

    def lookup(*args: Any, **kwargs: Any) -> Any:
        made[0] += 1
        if made[0] in failing:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    return made


def _host_url(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")  # a name to look up


def test_a_start_asks_again_while_the_name_fails_temporarily(redis_url, monkeypatch):
    made = _lookups_failing(monkeypatch, {1, 2, 3})
    settings = Settings.from_mapping({"redis_url": _host_url(redis_url), "allow_insecure_redis": True})
    assert connect.connect_redis(settings).ping()
    assert made[0] >= 4


@pytest.fixture
def guarded(tmp_path):
    """A Redis that asks for a password, and the file that holds it."""
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        admin.config_set("requirepass", "a-real-password")
        admin.close()
        secret = tmp_path / "redis_password"
        secret.write_text("a-real-password")
        yield server.url, secret


def test_the_check_that_redis_asks_for_a_password_asks_again_too(guarded, monkeypatch):
    url, secret = guarded
    settings = Settings.from_mapping({"redis_url": _host_url(url), "redis_password_file": str(secret)})
    made = _lookups_failing(monkeypatch, {2, 3})  # the first ping's lookup passes; the probe's fail
    assert connect.connect_redis(settings).ping()
    assert made[0] >= 4


def test_a_name_that_keeps_failing_is_one_line(guarded, monkeypatch):
    url, secret = guarded
    monkeypatch.setattr(connect, "NAME_RETRY_SECONDS", 0.3)
    settings = Settings.from_mapping({"redis_url": _host_url(url), "redis_password_file": str(secret)})
    _lookups_failing(monkeypatch, set(range(2, 1000)))  # the probe's lookups never resolve
    with pytest.raises(RedisUnavailableError) as refused:
        connect.connect_redis(settings)
    line = str(refused.value)
    assert "\n" not in line and "to check that it refuses clients without a password" in line, line
    assert "Temporary failure in name resolution" in line
