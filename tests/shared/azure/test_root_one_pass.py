"""The results root's one pass on Azure (Azurite, blocks of 1 KiB): the results object and the
leaf hashes are uploaded at the same time, from two threads on one client, each as many
blocks; the root is the one ``build_root`` reads back from the same blobs."""

from __future__ import annotations

import hashlib

from rqp.crypto import aad, encrypt_stream
from rqp.keys import LocalKeyProvider
from rqp.results_root import INPUTS_BLOB, LEAVES_BLOB, STAGED_SUFFIX, RootWhileWriting, build_root
from rqp.storage import FileBlobStore
from rqp.summary import Failure
from rqp.workload import Workload, blob_name, pack

TOTAL = 400


def test_the_one_pass_on_azure_gives_the_read_backs_root(store, tmp_path, kek, signer):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(TOTAL)))
    script = tmp_path / "s.py"
    script.write_text("def process(r):\n    return r\n")
    files = FileBlobStore(tmp_path / "blobs")
    pack(files, LocalKeyProvider(public_key_file=kek[1]), "az1", data, script, signer=signer.key)
    w = Workload.open(files, LocalKeyProvider(private_key_file=kek[0]), "az1", signer.trust)
    payloads = [line for line in data.read_bytes().split(b"\n") if line]
    failed = [Failure(7, "boom", 1, None)]
    lines = [b'{"id":%d,"result":{"n":%d}}\n' % (i, i) for i in range(TOTAL) if i != 7]
    blocks = [b"".join(lines[i : i + 50]) for i in range(0, len(lines), 50)]

    rw = RootWhileWriting(store, w, iter(payloads), failed, TOTAL)
    name = blob_name(w.id, "results.enc") + STAGED_SUFFIX
    digest = hashlib.sha256()

    def hashed(chunks):
        for c in chunks:
            digest.update(c)
            yield c

    store.put_stream(name, hashed(encrypt_stream(w.key, rw.lines(iter(blocks)), aad("results", w.id))))
    one = rw.finish(name, digest.hexdigest(), 1, signer.key)

    staged_leaves = store.get(blob_name(w.id, LEAVES_BLOB) + STAGED_SUFFIX)
    assert len(staged_leaves) == TOTAL * 32  # many 1 KiB blocks, committed once
    again = build_root(store, w, iter(payloads), name, failed, TOTAL, signer.key, round_=1)
    assert one.statement == again.statement
    assert store.get(blob_name(w.id, LEAVES_BLOB)) == staged_leaves
    assert store.get(blob_name(w.id, INPUTS_BLOB)) == store.get(blob_name(w.id, INPUTS_BLOB) + STAGED_SUFFIX)
