"""AzureBlobStore against a real Azurite: every BlobStore method, the failure modes a user meets
(missing blob or container, wrong key, refused SAS, emulator down), and the URL forms."""

from __future__ import annotations

import base64
import math
import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import AccountSasPermissions, BlobServiceClient, ResourceTypes, generate_account_sas
from azurite import DEV_ACCOUNT, DEV_KEY

from rqp.azure._common import RetryPolicy
from rqp.azure.blob import AzureBlobStore
from rqp.connect import open_blob_store
from rqp.errors import BlobNotFoundError, ConfigError, StorageError, StorageUnavailableError

BLOCK = 1024  # the fixtures' block size


def committed_blocks(azurite, container: str, name: str) -> int:
    """Count committed blocks with the SDK directly, to see how the store really uploaded."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    with service:
        blocks = service.get_blob_client(container, name).get_block_list("committed")[0]
    return len(blocks)


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message and "\r" not in message


# ---------------------------------------------------------------------------- round trips


def test_put_get_exists_size_overwrite(store):
    assert not store.exists("w1/data.enc")
    store.put("w1/data.enc", b"first")
    assert store.get("w1/data.enc") == b"first"
    assert store.exists("w1/data.enc")
    assert store.size("w1/data.enc") == 5
    store.put("w1/data.enc", b"second, longer")
    assert store.get("w1/data.enc") == b"second, longer"
    assert store.size("w1/data.enc") == 14
    store.put("empty", b"")
    assert store.get("empty") == b"" and store.size("empty") == 0


def test_binary_data_survives(store):
    data = bytes(range(256)) * 3
    store.put("bin", data)
    assert store.get("bin") == data


def test_put_stream_stages_blocks_and_commits_once(store, azurite, container_name):
    rng = os.urandom(20_000)
    sizes = [700, 3000, 1, 0, 5000, 1024, 10_275]
    assert sum(sizes) == len(rng)
    chunks, at = [], 0
    for n in sizes:
        chunks.append(rng[at : at + n])
        at += n
    pulled = []

    def gen():
        for c in chunks:
            pulled.append(len(c))
            yield c

    assert store.put_stream("big/data.enc", gen()) == len(rng)
    assert pulled == sizes
    assert store.get("big/data.enc") == rng
    assert committed_blocks(azurite, container_name, "big/data.enc") == math.ceil(len(rng) / BLOCK)


def test_large_put_is_uploaded_in_blocks(store, azurite, container_name):
    data = os.urandom(5 * BLOCK + 17)
    store.put("large", data)
    assert store.get("large") == data
    assert committed_blocks(azurite, container_name, "large") == 6


def test_put_stream_of_nothing_creates_an_empty_blob(store):
    assert store.put_stream("nothing", iter(())) == 0
    assert store.exists("nothing") and store.get("nothing") == b""


def test_failed_stream_leaves_no_blob(store):
    """Staged blocks stay invisible until the commit, so a crash mid-stream publishes nothing."""

    def gen():
        yield os.urandom(3 * BLOCK)
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError, match="producer died"):
        store.put_stream("half", gen())
    assert not store.exists("half")
    assert list(store.list()) == []


def test_failed_stream_keeps_the_old_blob(store):
    store.put("keep", b"old contents")

    def gen():
        yield b"x" * (2 * BLOCK)
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError):
        store.put_stream("keep", gen())
    assert store.get("keep") == b"old contents"


def test_iter_chunks_reads_in_ranges(store):
    data = os.urandom(10_000)
    store.put_stream("r", [data])
    pieces = list(store.iter_chunks("r", chunk_size=3000))
    assert [len(p) for p in pieces] == [3000, 3000, 3000, 1000]
    assert b"".join(pieces) == data
    assert list(store.iter_chunks("r", chunk_size=1 << 20)) == [data]
    store.put("e", b"")
    assert list(store.iter_chunks("e")) == []


def test_iter_chunks_refuses_a_blob_replaced_mid_read(store):
    store.put("moving", b"a" * 3000)
    it = store.iter_chunks("moving", chunk_size=1000)
    assert next(it) == b"a" * 1000
    store.put("moving", b"b" * 3000)
    # the next range may already have been read ahead (before the swap): it is the old
    # version's; the one after is refused, and nothing of the new version is ever yielded
    seen = []
    with pytest.raises(StorageError, match="replaced while being read"):
        seen.extend(it)
    assert seen in ([], [b"a" * 1000])


# ---------------------------------------------------------------------------- conditional create


def test_conditional_create_refuses_an_existing_blob(store):
    store.put("w/manifest.json", b"original", overwrite=False)
    with pytest.raises(StorageError, match="already exists") as exc:
        store.put("w/manifest.json", b"intruder", overwrite=False)
    assert "w/manifest.json" in str(exc.value)
    with pytest.raises(StorageError, match="already exists"):
        store.put_stream("w/manifest.json", [b"intruder" * 500], overwrite=False)
    assert store.get("w/manifest.json") == b"original"


def test_streamed_conditional_create_works_on_a_new_name(store):
    data = os.urandom(4 * BLOCK)
    assert store.put_stream("fresh", [data], overwrite=False) == len(data)
    assert store.get("fresh") == data


def test_conditional_create_race_has_exactly_one_winner(store):
    """If-None-Match: * is atomic on the server, unlike exists()-then-put."""
    results: dict[int, str] = {}
    barrier = threading.Barrier(6)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            store.put("race", f"writer {i}".encode(), overwrite=False)
            results[i] = "won"
        except StorageError:
            results[i] = "lost"

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in results.items() if r == "won"]
    assert len(results) == 6 and len(winners) == 1
    assert store.get("race") == f"writer {winners[0]}".encode()


# ---------------------------------------------------------------------------- listing and deleting


def test_list_by_prefix_is_sorted(store):
    names = ["b/x", "a/2", "ab", "a/10", "a/1", "a/sub/deep"]
    for n in names:
        store.put(n, n.encode())
    assert list(store.list("a/")) == ["a/1", "a/10", "a/2", "a/sub/deep"]
    assert list(store.list("a")) == ["a/1", "a/10", "a/2", "a/sub/deep", "ab"]
    assert list(store.list()) == sorted(names)
    assert list(store.list("zzz")) == []


def test_delete_and_delete_prefix(store):
    for n in ("w/1", "w/2", "w/3", "x/1"):
        store.put(n, b"v")
    store.delete("w/1")
    store.delete("w/1")  # absent is not an error
    assert not store.exists("w/1")
    assert store.delete_prefix("w/") == 2
    assert list(store.list()) == ["x/1"]


# ---------------------------------------------------------------------------- errors


def test_missing_blob_is_blob_not_found_naming_it(store):
    for call in (
        lambda: store.get("no/such.blob"),
        lambda: store.size("no/such.blob"),
        lambda: store.iter_chunks("no/such.blob"),
    ):
        with pytest.raises(BlobNotFoundError) as exc:
            call()
        assert "no/such.blob" in str(exc.value)
        assert DEV_ACCOUNT in str(exc.value)
        assert_one_line(str(exc.value))
    assert store.exists("no/such.blob") is False


def test_missing_container_is_a_clear_error(make_store, blob_url_for):
    s = make_store(blob_url_for("never-created"))
    for call in (lambda: s.put("a", b"x"), lambda: s.get("a"), lambda: list(s.list())):
        with pytest.raises(StorageError) as exc:
            call()
        assert not isinstance(exc.value, (BlobNotFoundError, StorageUnavailableError))
        msg = str(exc.value)
        assert "container never-created does not exist" in msg and DEV_ACCOUNT in msg
        assert_one_line(msg)


def test_invalid_blob_name_is_refused(store):
    for bad in ("", "/abs", "a/../b", "a//b"):
        with pytest.raises(StorageError):
            store.put(bad, b"x")


def test_wrong_account_key_fails_fast_with_one_line_naming_the_account(make_store, azurite, tmp_path, container_name):
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    conn = tmp_path / "conn"
    conn.write_text(azurite.connection_string.replace(DEV_KEY, wrong_key))
    # a generous retry budget: a permanent error must not use it
    patient = RetryPolicy(attempts=10, initial_wait=1.0, max_wait=5.0, deadline=60.0)
    s = make_store(f"azure-blob://{DEV_ACCOUNT}/{container_name}?connection_string_file={conn}", retry=patient)
    start = time.monotonic()
    with pytest.raises(StorageError) as exc:
        s.get("anything")
    assert time.monotonic() - start < 1.0
    msg = str(exc.value)
    assert not isinstance(exc.value, (StorageUnavailableError, BlobNotFoundError))
    assert f"storage account {DEV_ACCOUNT}" in msg and str(conn) in msg and "403" in msg
    assert wrong_key not in msg and DEV_KEY not in msg and wrong_key[:12] not in msg
    assert_one_line(msg)


def test_sas_file_works_and_a_refused_sas_never_shows_the_token(make_store, azurite, tmp_path, store, container_name):
    store.put("shared", b"readable")
    sas = generate_account_sas(
        DEV_ACCOUNT,
        DEV_KEY,
        resource_types=ResourceTypes(container=True, object=True),
        permission=AccountSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    sas_file = tmp_path / "sas"
    sas_file.write_text(sas + "\n")
    reader = make_store(
        f"azure-blob://{DEV_ACCOUNT}/{container_name}?sas_file={sas_file}&endpoint={azurite.blob_endpoint}"
    )
    assert reader.get("shared") == b"readable"
    assert list(reader.list()) == ["shared"]
    with pytest.raises(StorageError) as exc:
        reader.put("forbidden", b"x")  # read-only SAS
    msg = str(exc.value)
    assert "403" in msg and str(sas_file) in msg
    sig = dict(p.split("=", 1) for p in sas.split("&"))["sig"]
    assert sig not in msg and "sig=" not in msg
    assert_one_line(msg)


def test_storage_unavailable_after_bounded_retries_then_recovers(make_store, private_azurite, tmp_path, container_name):
    conn = tmp_path / "conn"
    conn.write_text(private_azurite.connection_string)
    s = make_store(f"azure-blob://{DEV_ACCOUNT}/{container_name}?connection_string_file={conn}",
                   retry=RetryPolicy(attempts=3, initial_wait=0.05, max_wait=0.1, deadline=10.0))  # fmt: skip
    s.create_container()
    s.put("before", b"1")
    private_azurite.stop()
    start = time.monotonic()
    with pytest.raises(StorageUnavailableError) as exc:
        s.get("before")
    elapsed = time.monotonic() - start
    msg = str(exc.value)
    assert elapsed < 5.0
    assert "after 3 attempts" in msg and DEV_ACCOUNT in msg and f"127.0.0.1:{private_azurite.blob_port}" in msg
    assert "connection refused" in msg
    assert_one_line(msg)
    # the same store works again once the emulator is back (in-memory: the container is new)
    private_azurite.start()
    assert s.create_container() is True
    s.put("after", b"2")
    assert s.get("after") == b"2"


# ---------------------------------------------------------------------------- URLs


def test_open_blob_store_via_connect(conn_file, store, container_name):
    store.put("via-connect", b"yes")
    opened = open_blob_store(f"azure-blob://{DEV_ACCOUNT}/{container_name}?connection_string_file={conn_file}")
    try:
        assert isinstance(opened, AzureBlobStore)
        assert opened.get("via-connect") == b"yes"
        assert opened.location.startswith(f"azure-blob://{DEV_ACCOUNT}/{container_name}")
    finally:
        opened.close()


def test_connection_string_with_explicit_endpoint(make_store, azurite, tmp_path, store, container_name):
    store.put("k", b"v")
    conn = tmp_path / "conn"
    conn.write_text(f"AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY}")
    s = make_store(
        f"azure-blob://{DEV_ACCOUNT}/{container_name}?connection_string_file={conn}&endpoint={azurite.blob_endpoint}"
    )
    assert s.get("k") == b"v"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("azure-blob://devstoreaccount1", "must name one container"),
        ("azure-blob://devstoreaccount1/a/b", "must name one container"),
        ("azure-blob://devstoreaccount1/Bad_Name", "is invalid"),
        ("azure-blob://bad_acct/c0ntainer", "account names are 3-24"),
        ("azure-blob://acct/container?sig=SECRETVALUE", "unknown option(s) sig"),
        ("azure-blob://user:SECRETVALUE@acct/container", "must not hold credentials"),
        ("azure-blob://acct/container?connection_string_file=/a&sas_file=/b", "names both"),
        ("azure-blob://acct/container?endpoint=http://127.0.0.1:1/acct", "only sent over https"),
        ("azure-blob://acct/container?sas_file=/nonexistent/sas", "does not exist"),
    ],
)
def test_bad_urls_are_config_errors_without_secrets(url, expected):
    with pytest.raises(ConfigError) as exc:
        AzureBlobStore.from_url(url)
    assert expected in str(exc.value)
    assert "SECRETVALUE" not in str(exc.value)


def test_connection_string_for_another_account_is_refused(conn_file):
    with pytest.raises(ConfigError, match="is for devstoreaccount1"):
        AzureBlobStore.from_url(f"azure-blob://otheraccount/container?connection_string_file={conn_file}")


def test_default_url_uses_the_public_endpoint_and_token_credential():
    s = AzureBlobStore.from_url("azure-blob://myaccount/mycontainer")
    try:
        assert s.location == "azure-blob://myaccount/mycontainer"
        assert s._container.url == "https://myaccount.blob.core.windows.net/mycontainer"
        assert type(s._container.credential).__name__ == "DefaultAzureCredential"
    finally:
        s.close()
