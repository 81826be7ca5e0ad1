"""Opening a workload on Azure (issue 28 item 3: the start of a workload), against a real Azurite.

A worker's first chunk waited for four blob requests in a row (manifest, key, the script's size,
the script) and the scheduler's first job for the data's size before its first range. Now the
manifest and key are read together, the script in one request of the manifest's size, and the
data's size while its first range is read. A spy in ``requests.Session.send`` holds one request
until another one has been sent: if the two were still made one after the other, the second
would never come while the first is held, and the test fails. The same checks and the same
one-line errors hold for a missing, shorter, longer or altered blob, on Azure and on a directory.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from rqp.errors import IntegrityError, WorkloadError
from rqp.keys import LocalKeyProvider
from rqp.signing import TrustStore
from rqp.storage import BlobStore, FileBlobStore
from rqp.workload import Workload, blob_name, pack

#: how long a held request waits for the one it should overlap with (only a failing test waits it out)
HOLD_SECONDS = 5.0
SCRIPT = b"def process(r):\n    return r\n"


class Spy:
    """Every request's (method, blob leaf), in order; ``hold(a, b)``: request ``a`` is sent only
    once ``b`` has been (or after ``HOLD_SECONDS``), and ``overlapped`` says whether it was."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.overlapped: dict[tuple[str, str], bool] = {}
        self._holds: dict[tuple[str, str], tuple[str, str]] = {}
        self._cond = threading.Condition()

    def hold(self, held: tuple[str, str], until: tuple[str, str]) -> None:
        self._holds[held] = until

    def of(self, method: str, leaf: str) -> int:
        with self._cond:
            return sum(1 for m, n in self.sent if m == method and n == leaf)

    def clear(self) -> None:
        with self._cond:
            self.sent.clear()

    def before_send(self, method: str, url: str) -> None:
        leaf = urlsplit(url).path.rsplit("/", 1)[-1]
        with self._cond:
            self.sent.append((method, leaf))
            self._cond.notify_all()
            until = self._holds.get((method, leaf))
            if until is None:
                return
            seen = self._cond.wait_for(lambda: until in self.sent, timeout=HOLD_SECONDS)
            self.overlapped[(method, leaf)] = seen


@pytest.fixture
def spy(monkeypatch) -> Iterator[Spy]:
    s = Spy()
    real_send = requests.Session.send

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        s.before_send(str(request.method), str(request.url))
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    yield s


@pytest.fixture(params=["azure", "directory"])
def any_store(request, tmp_path) -> BlobStore:
    if request.param == "azure":
        return request.getfixturevalue("store")
    return FileBlobStore(tmp_path / "blobs")


def _pack(store: BlobStore, tmp_path, kek, signer) -> bytes:
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(3000)))
    script = tmp_path / "s.py"
    script.write_bytes(SCRIPT)
    pack(store, LocalKeyProvider(public_key_file=kek[1]), "w1", data, script, segment_size=1000, signer=signer.key)
    return data.read_bytes()


def _open(store: BlobStore, kek) -> Workload:
    trust = TrustStore.from_file(os.environ["RQP_TRUSTED_SIGNERS_FILE"])
    return Workload.open(store, LocalKeyProvider(private_key_file=kek[0]), "w1", trust)


def test_manifest_and_key_are_read_together_and_the_script_in_one_request(store, spy, tmp_path, kek, signer):
    _pack(store, tmp_path, kek, signer)
    spy.clear()
    spy.hold(("GET", "manifest.json"), until=("GET", "key.json"))
    started = time.monotonic()
    w = _open(store, kek)
    assert spy.overlapped == {("GET", "manifest.json"): True}, "the key was not read while the manifest was"
    assert time.monotonic() - started < HOLD_SECONDS
    assert spy.of("GET", "manifest.json") == 1 and spy.of("GET", "key.json") == 1
    spy.clear()
    assert w.script_source() == SCRIPT
    assert spy.sent == [("GET", "script.enc")], "the script's size was asked before reading it"


def test_the_data_size_is_asked_while_its_first_range_is_read(store, spy, tmp_path, kek, signer):
    data = _pack(store, tmp_path, kek, signer)
    w = _open(store, kek)
    spy.clear()
    spy.hold(("HEAD", "data.enc"), until=("GET", "data.enc"))
    assert b"".join(w.data_chunks()) == data
    assert spy.overlapped == {("HEAD", "data.enc"): True}, "the first range waited for the size"
    assert spy.of("HEAD", "data.enc") == 1 and spy.of("GET", "data.enc") == 1


def test_a_missing_manifest_or_key_gives_the_same_errors(any_store, tmp_path, kek, signer):
    _pack(any_store, tmp_path, kek, signer)
    key = any_store.get(blob_name("w1", "key.json"))
    any_store.delete(blob_name("w1", "key.json"))
    with pytest.raises(IntegrityError, match=r"^key.json of workload w1 is missing from .*; re-pack the workload$"):
        _open(any_store, kek)
    any_store.delete(blob_name("w1", "manifest.json"))  # both missing: the manifest's error first
    with pytest.raises(WorkloadError, match=r"^workload w1 not found in .*; pack it with 'rqp pack'"):
        _open(any_store, kek)
    any_store.put(blob_name("w1", "key.json"), key)
    with pytest.raises(WorkloadError, match=r"^workload w1 not found in "):
        _open(any_store, kek)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda raw: None, r"^script of workload w1 is missing from .*; re-pack the workload$"),
        (lambda raw: raw[:-7], r"^script of workload w1 is \d+ bytes but the manifest says \d+: truncated or replaced"),
        (lambda raw: raw + b"x" * 5000, r"^script of workload w1 is \d+ bytes but the manifest says \d+: truncated"),
        (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), r"^script of workload w1 does not match its manifest digest"),
    ],
    ids=["missing", "shorter", "longer", "altered"],
)
def test_a_changed_script_blob_gives_the_same_errors(any_store, tmp_path, kek, signer, change, error):
    _pack(any_store, tmp_path, kek, signer)
    name = blob_name("w1", "script.enc")
    changed = change(any_store.get(name))
    if changed is None:
        any_store.delete(name)
    else:
        any_store.put(name, changed)
    w = _open(any_store, kek)
    with pytest.raises(IntegrityError, match=error):
        w.script_source()


def test_a_missing_or_truncated_data_blob_gives_the_same_errors(any_store, tmp_path, kek, signer):
    _pack(any_store, tmp_path, kek, signer)
    name = blob_name("w1", "data.enc")
    raw = any_store.get(name)
    any_store.put(name, raw[:-500])
    with pytest.raises(IntegrityError, match=r"^data of workload w1 is \d+ bytes but the manifest says \d+: truncated"):
        b"".join(_open(any_store, kek).data_chunks())
    any_store.delete(name)
    with pytest.raises(IntegrityError, match=r"^data of workload w1 is missing from .*; re-pack the workload$"):
        b"".join(_open(any_store, kek).data_chunks())
