"""Fixtures shared by the whole suite: real servers on free ports, stopped afterwards."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "examples")]  # harness; redis_server (the demo's)

from redis_server import RedisServer  # noqa: E402


@pytest.fixture(scope="session")
def redis_server():
    """One real Redis-compatible server for the session (redis-server or embedded Valkey)."""
    server = RedisServer().start()
    yield server
    server.stop()


#: the processor's threads that keep talking to Redis on their own: (module, class)
_REDIS_THREADS = (("rqp_processor.chunk", "LeaseKeeper"), ("rqp_processor.handback", "CommitWatch"))


@pytest.fixture(autouse=True)
def _processor_threads_stopped():
    """A ``ChunkProcessor`` made in process keeps a lease keeper and a commit watch running (a
    worker's process ends them by exiting): stopped at the test's end. Left running, the watch
    asked the session's Redis about its recent commits each second for a lease's time -- into the
    next tests, whose MONITOR and command counts took them for their own (two flaky tests). So
    are the scheduler's lock keeper (``rqp_scheduler.run.lock``) and the locks it renews."""
    yield
    lock = sys.modules.get("rqp_scheduler.run.lock")
    if lock is not None:
        lock.stop_keeping()
    kinds = tuple(getattr(sys.modules[mod], name) for mod, name in _REDIS_THREADS if mod in sys.modules)
    if not kinds:
        return
    threads = [t for t in threading.enumerate() if isinstance(t, kinds)]
    for t in threads:
        t.stop()
    for t in threads:
        t.join(10)
        assert not t.is_alive(), f"{t.name} did not stop"


@pytest.fixture
def redis_url(redis_server) -> str:
    """A clean database for each test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def r(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def kek(tmp_path_factory):
    """A real RSA-3072 key-encryption key pair, generated once per session."""
    from rqp.keys import generate_kek

    d = tmp_path_factory.mktemp("keys")
    generate_kek(d / "kek.pem", d / "kek.pub.pem")
    return d / "kek.pem", d / "kek.pub.pem"


@pytest.fixture(scope="session")
def other_kek(tmp_path_factory):
    from rqp.keys import generate_kek

    d = tmp_path_factory.mktemp("keys-other")
    generate_kek(d / "kek.pem", d / "kek.pub.pem")
    return d / "kek.pem", d / "kek.pub.pem"


@pytest.fixture(scope="session")
def signer(tmp_path_factory):
    """A submitter's Ed25519 key and the trusted-signers file that names it."""
    from types import SimpleNamespace

    from harness import make_signer

    from rqp.signing import LocalSigningKey, TrustStore

    key, trusted = make_signer(tmp_path_factory.mktemp("signer"))
    return SimpleNamespace(path=key, trusted=trusted, key=LocalSigningKey(key), trust=TrustStore.from_file(trusted))


@pytest.fixture(scope="session")
def operator(tmp_path_factory):
    """An operator's Ed25519 key (``rqp keygen --operator``) and the trusted-operators file that
    names it."""
    from types import SimpleNamespace

    from harness import make_signer

    from rqp.signing import LocalSigningKey, TrustStore

    key, trusted = make_signer(tmp_path_factory.mktemp("operator"), "operator")
    return SimpleNamespace(path=key, trusted=trusted, key=LocalSigningKey(key), trust=TrustStore.from_file(trusted))


@pytest.fixture(autouse=True)
def _signer_env(monkeypatch, signer, operator):
    """In-process commands sign with the session's submitter key and trust it, and sign control
    requests with the session's operator key and trust that, as a deployment configured by its
    operator would; tests of the refusals unset or replace these."""
    monkeypatch.setenv("RQP_SIGNING_KEY_FILE", str(signer.path))
    monkeypatch.setenv("RQP_TRUSTED_SIGNERS_FILE", str(signer.trusted))
    monkeypatch.setenv("RQP_OPERATOR_KEY_FILE", str(operator.path))
    monkeypatch.setenv("RQP_TRUSTED_OPERATORS_FILE", str(operator.trusted))


@pytest.fixture
def cluster(tmp_path, redis_url, kek, operator):
    """Real rqp processes (pack, scheduler, processors) against the test Redis and a blob dir;
    they trust the session's operator key (a console started with it signs actions they obey)."""
    from harness import Cluster

    c = Cluster(
        tmp_path / "cluster", redis_url, kek[0], extra_env={"RQP_TRUSTED_OPERATORS_FILE": str(operator.trusted)}
    )
    yield c
    c.stop()


@pytest.fixture(scope="session")
def azurite():
    """One real Azurite (blob and queue emulator) for the session, on free ports."""
    from azurite import Azurite

    server = Azurite().start()
    yield server
    server.close()
