import os

import pytest

from rqp.errors import IntegrityError, WorkloadError, WrongKeyError
from rqp.keys import LocalKeyProvider
from rqp.storage import FileBlobStore
from rqp.workload import Workload, blob_name, pack


@pytest.fixture
def packed(tmp_path, kek, signer):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(5000)))
    script = tmp_path / "s.py"
    script.write_text("def process(r):\n    return r\n")
    store = FileBlobStore(tmp_path / "blobs")
    pack(store, LocalKeyProvider(public_key_file=kek[1]), "w1", data, script, segment_size=1000, signer=signer.key)
    return store, LocalKeyProvider(private_key_file=kek[0]), data.read_bytes()


def _open(store, keys, wid):
    from rqp.signing import TrustStore

    return Workload.open(store, keys, wid, TrustStore.from_file(os.environ["RQP_TRUSTED_SIGNERS_FILE"]))


def test_pack_and_open_round_trip(packed):
    store, keys, data = packed
    w = _open(store, keys, "w1")
    assert b"".join(w.data_chunks()) == data
    assert w.script_source().startswith(b"def process")
    assert b'"n": 1' not in store.get(blob_name("w1", "data.enc"))


def test_existing_workload_is_not_overwritten(packed, tmp_path, kek, signer):
    store, keys, _ = packed
    with pytest.raises(WorkloadError, match=r"already exists.*--replace"):
        pack(store, keys, "w1", tmp_path / "d.jsonl", tmp_path / "s.py", signer=signer.key)


def test_tampered_data_blob(packed):
    store, keys, _ = packed
    name = blob_name("w1", "data.enc")
    raw = bytearray(store.get(name))
    raw[3000] ^= 0x40
    store.put(name, bytes(raw))
    w = _open(store, keys, "w1")
    with pytest.raises(IntegrityError, match="data of workload w1 failed authentication at segment 2"):
        b"".join(w.data_chunks())


def test_truncated_data_blob(packed):
    store, keys, _ = packed
    name = blob_name("w1", "data.enc")
    store.put(name, store.get(name)[:-500])
    with pytest.raises(IntegrityError, match="truncated or replaced"):
        b"".join(_open(store, keys, "w1").data_chunks())


def test_tampered_manifest(packed):
    """The signature covers the manifest: a changed field is caught before any key is unwrapped."""
    store, keys, _ = packed
    name = blob_name("w1", "manifest.json")
    store.put(name, store.get(name).replace(b'"jsonl"', b'"csv"'))
    with pytest.raises(IntegrityError, match=r"workload w1 differs from what sha256:[0-9a-f]+ signed"):
        _open(store, keys, "w1")


def test_blobs_moved_between_workloads(packed, tmp_path, kek, signer):
    store, keys, _ = packed
    pack(
        store,
        LocalKeyProvider(public_key_file=kek[1]),
        "w2",
        tmp_path / "d.jsonl",
        tmp_path / "s.py",
        signer=signer.key,
    )
    store.put(blob_name("w2", "data.enc"), store.get(blob_name("w1", "data.enc")))
    with pytest.raises(IntegrityError):
        b"".join(_open(store, keys, "w2").data_chunks())


def test_wrong_key(packed, other_kek):
    store, _, _ = packed
    with pytest.raises(WrongKeyError, match="wrong key"):
        _open(store, LocalKeyProvider(private_key_file=other_kek[0]), "w1")


def test_unknown_workload_and_bad_id(packed):
    store, keys, _ = packed
    with pytest.raises(WorkloadError, match="workload nope not found"):
        _open(store, keys, "nope")
    with pytest.raises(WorkloadError, match="invalid workload id"):
        _open(store, keys, "../etc")


def test_seal_packed_values_open_one_by_one(packed):
    """The enqueue's bulk sealing gives each record what ``seal`` would: bound to its id, with
    its own nonce."""
    from rqp.ledger import PAIR

    store, keys, _ = packed
    w = _open(store, keys, "w1")
    values = [(7, b"seven"), (8, b""), (1_000_000, b"x" * 3000)]
    blob = w.seal_packed("record", values)
    got, nonces, pos = [], set(), 0
    while pos < len(blob):
        rid, length = PAIR.unpack_from(blob, pos)
        sealed = blob[pos + PAIR.size : pos + PAIR.size + length]
        pos += PAIR.size + length
        got.append((rid, w.open_sealed("record", rid, sealed)))
        nonces.add(sealed[:12])
        with pytest.raises(IntegrityError):
            w.open_sealed("record", rid + 1, sealed)  # moved to another record
        with pytest.raises(IntegrityError):
            w.open_sealed("status", rid, sealed)  # used for another purpose
    assert got == values
    assert len(nonces) == 3
    assert w.seal_packed("record", []) == b""


def test_sealed_part_decodes_and_opens(packed):
    from rqp.parts import decode_part, encode_part, seal_part

    store, keys, _ = packed
    w = _open(store, keys, "w1")
    results = [(3, b'{"r":3}'), (4, b"null")]
    part = seal_part(w, results)
    entries = list(decode_part(part, "p"))
    assert [(rid, w.open_sealed("result", rid, sealed)) for rid, sealed in entries] == results
    assert encode_part(entries) == part  # the same layout as sealing one by one
    with pytest.raises(IntegrityError):
        w.open_sealed("result", 4, entries[0][1])


def test_a_part_read_in_pieces_of_any_size_gives_the_same_entries():
    """Consolidation reads parts in pieces (one entry in memory at a time): cut anywhere, the
    entries are the same; a truncated or foreign part is an IntegrityError."""
    import pytest

    from rqp.errors import IntegrityError
    from rqp.parts import decode_part, encode_part, iter_part

    entries = [(i, bytes([i]) * (i * 37 % 300)) for i in range(40)]
    raw = encode_part(entries)
    for size in (1, 2, 5, 13, 64, 1000, len(raw)):
        pieces = [raw[i : i + size] for i in range(0, len(raw), size)]
        assert list(iter_part(pieces, "p")) == list(decode_part(raw, "p")) == entries
    with pytest.raises(IntegrityError, match="truncated"):
        list(iter_part([raw[:-3]], "p"))
    with pytest.raises(IntegrityError, match="not an rqp result part"):
        list(iter_part([b"XXXXX" + raw[5:]], "p"))
