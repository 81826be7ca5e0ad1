"""Fixtures for the Azure backends: one real Azurite for the session, a fresh container or queue
name per test, and clients with a small retry budget so outage tests stay quick."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from azurite import DEV_ACCOUNT, Azurite  # tests/ is on sys.path (tests/conftest.py)

from rqp.azure._common import RetryPolicy
from rqp.azure.blob import AzureBlobStore
from rqp.azure.queue import AzureMessageQueue

#: small block size so a multi-block streamed upload takes milliseconds
TEST_BLOCK_SIZE = 1024
#: a few quick retries: enough to exercise the policy, short enough for an outage test
FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.05, max_wait=0.2, deadline=5.0)
TEST_CONNECTION_TIMEOUT = 2.0
TEST_READ_TIMEOUT = 10.0


def write_secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def blob_url(container: str, conn_file: Path) -> str:
    return f"azure-blob://{DEV_ACCOUNT}/{container}?connection_string_file={conn_file}"


def queue_url(conn_file: Path) -> str:
    return f"azure-queue://{DEV_ACCOUNT}?connection_string_file={conn_file}"


def open_store(url: str, retry: RetryPolicy = FAST_RETRY, block_size: int = TEST_BLOCK_SIZE) -> AzureBlobStore:
    return AzureBlobStore.from_url(
        url,
        retry=retry,
        block_size=block_size,
        connection_timeout=TEST_CONNECTION_TIMEOUT,
        read_timeout=TEST_READ_TIMEOUT,
    )


def open_queue(url: str, retry: RetryPolicy = FAST_RETRY) -> AzureMessageQueue:
    return AzureMessageQueue.from_url(
        url, retry=retry, connection_timeout=TEST_CONNECTION_TIMEOUT, read_timeout=TEST_READ_TIMEOUT
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def private_azurite():
    """An emulator of its own, for tests that stop and restart it."""
    server = Azurite().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def conn_file(azurite, tmp_path_factory) -> Path:
    return write_secret(tmp_path_factory.mktemp("secrets") / "storage-conn", azurite.connection_string)


@pytest.fixture
def container_name() -> str:
    return unique("rqp")


@pytest.fixture
def make_store():
    """``make_store(url, retry=..., block_size=...)``: a store closed after the test."""
    opened: list[AzureBlobStore] = []

    def make(url: str, retry: RetryPolicy = FAST_RETRY, block_size: int = TEST_BLOCK_SIZE) -> AzureBlobStore:
        opened.append(open_store(url, retry, block_size))
        return opened[-1]

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def make_queue():
    """``make_queue(url, retry=...)``: a message queue closed after the test."""
    opened: list[AzureMessageQueue] = []

    def make(url: str, retry: RetryPolicy = FAST_RETRY) -> AzureMessageQueue:
        opened.append(open_queue(url, retry))
        return opened[-1]

    yield make
    for q in opened:
        q.close()


@pytest.fixture
def store(make_store, conn_file, container_name) -> AzureBlobStore:
    """A store on a fresh container of the session's Azurite, 1 KiB blocks."""
    s = make_store(blob_url(container_name, conn_file))
    assert s.create_container() is True
    return s


@pytest.fixture
def mq(make_queue, conn_file) -> AzureMessageQueue:
    return make_queue(queue_url(conn_file))


@pytest.fixture
def blob_url_for(conn_file):
    """``blob_url_for(container)``: the URL tests pass to ``make_store``."""
    return lambda container: blob_url(container, conn_file)


@pytest.fixture
def queue_url_default(conn_file) -> str:
    return queue_url(conn_file)


@pytest.fixture
def queue_name() -> str:
    return unique("rqp-q")
