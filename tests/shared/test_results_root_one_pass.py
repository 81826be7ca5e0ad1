"""The results root's one pass (``RootWhileWriting``: the leaves made from the result lines as
they are encrypted, nothing read back but the stored bytes' digest) gives exactly what
``build_root`` gives when it reads the same results object back: the same ``inputs.bin``, the
same ``leaves.bin``, the same root and keys claim -- for every kind of line, failed and
never-run records, keyed rows, and blocks cut anywhere (a line split between two). What it
cannot match (a line no record takes) it refuses, and a writer that fails never hangs it."""

from __future__ import annotations

import hashlib

import pytest

from rqp.crypto import aad, encrypt_stream
from rqp.errors import IntegrityError, StorageError
from rqp.keys import LocalKeyProvider
from rqp.results_root import INPUTS_BLOB, LEAVES_BLOB, STAGED_SUFFIX, RootWhileWriting, build_root
from rqp.storage import FileBlobStore
from rqp.summary import Failure
from rqp.workload import Workload, blob_name, pack

#: the results object's lines by record id (ids missing here failed or never ran)
LINES: dict[int, bytes] = {
    0: b'{"id":0,"result":{"b":1,"a":[1,2,{"z":null,"y":true}]}}',
    1: b'{"id":1,"result":"caf\xc3\xa9 \\u00e9\\ud83d\\ude00"}',
    2: b'{"id":2,"key":"k-2","result":{"n":2}}',
    3: b'{ "id" : 3 , "result" : [ 1 , 2.5 ] }',
    4: b'{"id":4,"result":NaN}',
    6: b'{"id":6,"result":' + b"[" * 600 + b"]" * 600 + b"}",
    8: b'{"id":8,"result":{"a":1,"a":2}}',
    9: b'{"id":9,"key":"k-2","result":1}',
    10: b'{"id":10,"result":"\xff"}',
    11: b'{"id":11,"error":"result is not valid JSON: not valid JSON"}',
    12: b'{"id":12,"result":1} ',
    14: b'{"id":14,"result":{"b":{"d":4,"c":3},"a":-0.0}}',
}
#: failed records: (reason, the data's own id)
FAILED = {5: ("boom", None), 13: ("bad record", "k-13")}
TOTAL = 17  # records 7, 15 and 16 never ran


@pytest.fixture
def workload(tmp_path, kek, signer):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(TOTAL)))
    script = tmp_path / "s.py"
    script.write_text("def process(r):\n    return r\n")
    store = FileBlobStore(tmp_path / "blobs")
    pack(store, LocalKeyProvider(public_key_file=kek[1]), "w1", data, script, signer=signer.key)
    w = Workload.open(store, LocalKeyProvider(private_key_file=kek[0]), "w1", signer.trust)
    return store, w, [line for line in data.read_bytes().split(b"\n") if line]


def _write(store, w, rw: RootWhileWriting, blocks: list[bytes]) -> tuple[str, str]:
    """The results object written as ``consolidate.write_results`` writes it, through ``rw.lines``:
    (its staged name, the SHA-256 of the ciphertext on its way out)."""
    name = blob_name(w.id, "results.enc") + STAGED_SUFFIX
    digest = hashlib.sha256()

    def hashed(chunks):
        for c in chunks:
            digest.update(c)
            yield c

    store.put_stream(name, hashed(encrypt_stream(w.key, rw.lines(iter(blocks)), aad("results", w.id))))
    return name, digest.hexdigest()


def _failures() -> list[Failure]:
    return [Failure(rid, reason, 1, key) for rid, (reason, key) in FAILED.items()]


@pytest.mark.parametrize("cut", [7, 50, 1 << 16], ids=["lines-split-across-blocks", "small-blocks", "one-block"])
def test_the_one_pass_gives_the_read_backs_blobs_and_root(workload, cut, signer):
    store, w, payloads = workload
    body = b"".join(LINES[rid] + b"\n" for rid in sorted(LINES))
    blocks = [body[i : i + cut] for i in range(0, len(body), cut)]

    rw = RootWhileWriting(store, w, iter(payloads), _failures(), TOTAL)
    name, sha = _write(store, w, rw, blocks)
    one = rw.finish(name, sha, 3, signer.key)

    read_back = build_root(store, w, iter(payloads), name, _failures(), TOTAL, signer.key, round_=3, results_sha256=sha)

    assert one.statement == read_back.statement  # root, size, round, unique_keys (False: k-2 twice)
    assert one.statement["unique_keys"] is False and one.size == TOTAL
    assert one.signature is not None and one.check(w, None, w.id, 3) is not None
    for blob in (LEAVES_BLOB, INPUTS_BLOB):
        assert store.get(blob_name(w.id, blob) + STAGED_SUFFIX) == store.get(blob_name(w.id, blob))


def test_a_line_no_record_takes_is_refused(workload):
    """Record 3's line before record 2's: the read-back's leaves would have left record 2's line
    unread; the one pass names the line instead of signing a root over it."""
    store, w, payloads = workload
    body = LINES[0] + b"\n" + LINES[1] + b"\n" + LINES[3] + b"\n" + LINES[2] + b"\n"
    rw = RootWhileWriting(store, w, iter(payloads), _failures(), TOTAL)
    name, sha = _write(store, w, rw, [body])
    with pytest.raises(IntegrityError, match=r"1 line\(s\) of the results object name no record in order"):
        rw.finish(name, sha, 1, None)


def test_a_results_object_other_than_the_one_written_is_refused(workload):
    store, w, payloads = workload
    rw = RootWhileWriting(store, w, iter(payloads), _failures(), TOTAL)
    name, sha = _write(store, w, rw, [LINES[0] + b"\n"])
    store.put(name, store.get(name)[:-1] + b"\x00")  # one byte of the tag
    with pytest.raises(IntegrityError, match=r"results\.enc\.staged is not the results object consolidation wrote"):
        rw.finish(name, sha, 1, None)


class _LeavesRefused(FileBlobStore):
    """A store whose write of the leaf hashes fails after the first piece (a store gone down)."""

    def put_stream(self, name, chunks, *, overwrite=True):
        if LEAVES_BLOB in name:
            for _ in chunks:
                raise StorageError("the store went away")
        return super().put_stream(name, chunks, overwrite=overwrite)


@pytest.mark.timeout(60)  # a hang is the failure this guards against
def test_the_leaves_writers_error_is_raised_in_the_consolidation_not_hung(workload, tmp_path):
    store, w, payloads = workload
    refusing = _LeavesRefused(store.root)
    rw = RootWhileWriting(refusing, w, iter(payloads), _failures(), TOTAL)
    many = [LINES[0] + b"\n"] * 200  # more pieces than the pipe holds: the feeder must not block forever
    with pytest.raises(StorageError, match="the store went away"):
        name, sha = _write(refusing, w, rw, many)
        rw.finish(name, sha, 1, None)
    rw.abort()  # what consolidate does on any failure: returns, the thread gone
    assert not refusing.exists(blob_name(w.id, LEAVES_BLOB) + STAGED_SUFFIX)


@pytest.mark.timeout(60)
def test_an_abort_midway_stops_the_writer_without_a_leaves_blob(workload):
    store, w, payloads = workload
    rw = RootWhileWriting(store, w, iter(payloads), _failures(), TOTAL)
    lines = rw.lines(iter([LINES[0] + b"\n", LINES[1] + b"\n"]))
    next(lines)
    rw.abort()
    assert not rw._leaves._thread.is_alive()
    assert not store.exists(blob_name(w.id, LEAVES_BLOB) + STAGED_SUFFIX)
