"""How many requests AzureBlobStore makes, against a real Azurite (issue 28: "fewer round trips").

Every request a client sends passes through ``requests.Session.send``; a spy there records the
method and URL and lets the request go on to Azurite, so these tests count what really went over
the wire. Each test fails if the round trip it removed comes back."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from azurite import DEV_ACCOUNT, Azurite

from rqp.azure._common import RetryPolicy, environment_settings
from rqp.errors import StorageUnavailableError

#: how long a test waits for read-ahead requests to show up before failing
WAIT_SECONDS = 10.0


class Wire:
    """The (method, path?query) of every request sent while installed, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def record(self, method: str, url: str) -> None:
        parts = urlsplit(url)
        with self._lock:
            self.sent.append((method, parts.path + ("?" + parts.query if parts.query else "")))

    def clear(self) -> None:
        with self._lock:
            self.sent.clear()

    def of(self, method: str, blob: str = "") -> list[str]:
        with self._lock:
            return [u for m, u in self.sent if m == method and (not blob or u.split("?")[0].endswith("/" + blob))]

    def wait_for(self, method: str, count: int) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while len(self.of(method)) < count:
            assert time.monotonic() < deadline, f"expected {count} {method} requests, saw {self.sent}"
            time.sleep(0.01)


@pytest.fixture
def wire(monkeypatch) -> Iterator[Wire]:
    spy = Wire()
    real_send = requests.Session.send

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        spy.record(str(request.method), str(request.url))
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    yield spy


def test_a_stream_that_fits_in_one_block_is_one_request(store, wire):
    assert store.put_stream("small", iter([b"a" * 300, b"b" * 300])) == 600
    assert wire.of("PUT") == [wire.of("PUT", "small")[0]] and "comp=block" not in wire.of("PUT")[0]
    assert wire.of("HEAD") == []
    wire.clear()
    # a create-only stream is refused by If-None-Match on that one request: no existence check
    with pytest.raises(Exception, match="already exists"):
        store.put_stream("small", iter([b"c" * 10]), overwrite=False)
    assert len(wire.sent) == 1 and store.get("small") == b"a" * 300 + b"b" * 300


def test_iter_chunks_reads_ranges_without_a_properties_request(store, wire):
    data = os.urandom(10_000)
    store.put("r", data)
    wire.clear()
    assert b"".join(store.iter_chunks("r", chunk_size=3000)) == data
    assert wire.of("HEAD") == [] and len(wire.of("GET", "r")) == 4


def test_delete_prefix_is_one_batch_request(store, wire):
    for i in range(30):
        store.put(f"parts/{i:02d}", b"x")
    store.put("keep", b"k")
    wire.clear()
    assert store.delete_prefix("parts/") == 30
    # one listing, one Blob Batch of 30 deletes (not 30 DELETE requests)
    assert len(wire.of("GET")) == 1 and len(wire.of("POST")) == 1 and wire.of("DELETE") == []
    assert list(store.list()) == ["keep"]
    assert store.delete_many(["keep", "never-was"]) == 2  # absent names are not an error
    assert list(store.list()) == []


def test_prefetch_reads_ahead_once_and_get_serves_it(store, wire):
    names = [f"p/{i}" for i in range(7)]
    for i, n in enumerate(names):
        store.put(n, bytes([i]) * 1000)
    store.put("other", b"o")
    wire.clear()
    store.prefetch(names)
    wire.wait_for("GET", 4)  # read ahead before any get: the first four
    assert [store.get(n) for n in names] == [bytes([i]) * 1000 for i in range(7)]
    assert store.get("other") == b"o"  # a name never hinted is read as usual
    assert sorted(u.split("?")[0].rsplit("/", 2)[-1] for u in wire.of("GET")) == sorted(
        [str(i) for i in range(7)] + ["other"]
    ), "each blob read exactly once"


def test_environment_is_read_when_the_client_is_built_not_per_request(
    make_store, blob_url_for, container_name, monkeypatch
):
    for var in (
        "NO_PROXY",
        "no_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    store = make_store(blob_url_for(container_name))
    store.create_container()
    # a proxy set after the client was built is not looked up on each request (that lookup was a
    # quarter of the client's CPU per request)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    store.put("a", b"1")
    assert store.get("a") == b"1"
    # ... but one set before is honoured: this store's requests go to the (dead) proxy
    quick = RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02, deadline=2.0)
    proxied = make_store(blob_url_for(container_name), retry=quick)
    with pytest.raises(StorageUnavailableError):
        proxied.get("a")


def test_environment_settings_keep_no_proxy_and_the_ca_bundle(monkeypatch):
    for var in (
        "NO_PROXY",
        "no_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    opts = environment_settings("https://acct.blob.core.windows.net")
    assert opts == {
        "use_env_settings": False,
        "proxies": {"https": "http://proxy.example:3128"},
        "connection_verify": "/etc/ssl/corp.pem",
    }
    monkeypatch.setenv("NO_PROXY", ".core.windows.net")
    assert "proxies" not in environment_settings("https://acct.blob.core.windows.net")


def test_a_multi_block_stream_that_fails_mid_way_commits_nothing(store, wire):
    """Blocks go up while the next is produced; a producer failing after some were staged leaves
    no blob (no commit request is ever sent)."""

    def gen() -> Iterator[bytes]:
        for _ in range(6):
            yield os.urandom(1024)
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError, match="producer failed"):
        store.put_stream("half", gen())
    assert not any("comp=blocklist" in u for u in wire.of("PUT")) and not store.exists("half")


def test_outage_during_prefetch_is_reported_by_get(make_store, conn_file, container_name):
    """A read ahead that failed is tried again by ``get`` itself, so its error (or its success
    after the outage) belongs to the caller's call, under its retry policy."""
    server = Azurite().start()
    try:
        conn = conn_file.parent / f"conn-{container_name}"
        conn.write_text(server.connection_string)
        quick = RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02, deadline=2.0)
        s = make_store(f"azure-blob://{DEV_ACCOUNT}/{container_name}?connection_string_file={conn}", retry=quick)
        s.create_container()
        s.put("x", b"1")
        server.stop()
        s.prefetch(["x"])
        with pytest.raises(StorageUnavailableError):
            s.get("x")
    finally:
        server.close()


def test_a_forked_child_reads_ahead_with_threads_of_its_own(store):
    """A worker process forked after its parent used the store: the parent's read-ahead threads
    do not exist in the child, so it starts its own instead of waiting on them forever."""
    data = os.urandom(5000)
    store.put("f", data)
    assert b"".join(store.iter_chunks("f", chunk_size=1000)) == data  # the parent's threads start
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the read completes and matches
        ok = False
        try:
            ok = b"".join(store.iter_chunks("f", chunk_size=1000)) == data
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's read never finished (waiting on its parent's threads)")
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_large_blob_is_read_in_ranges_of_read_range_when_no_size_is_named(store, wire):
    """The data at enqueue and the results object are read without naming a piece size: on Azure
    in ranges of ``READ_RANGE`` (8 MiB), half the requests of 4 MiB ones -- through the retrying
    wrapper the roles use too."""
    from rqp.azure.blob import READ_RANGE
    from rqp.storage._blob import DEFAULT_READ_CHUNK
    from rqp.storage.retrying import RetryingBlobStore

    assert store.read_chunk == READ_RANGE > DEFAULT_READ_CHUNK
    data = os.urandom(2 * READ_RANGE + 1)
    store.put_stream("big", [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)])
    for reader in (store, RetryingBlobStore(store)):
        wire.clear()
        pieces = list(reader.iter_chunks("big"))
        assert [len(p) for p in pieces] == [READ_RANGE, READ_RANGE, 1] and b"".join(pieces) == data
        assert len(wire.of("GET", "big")) == 3  # 5 in ranges of 4 MiB
