"""``build_root``'s leaves are the documented ones, whatever shortcut computes them: for every kind
of stored results line -- the usual ``{"id","result"}``, keyed rows, lines that are not strict JSON,
spacing, unicode, deep nesting, numbers refused -- and for failed and never-run records, each leaf
hash in ``leaves.bin`` and the signed root equal what ``rqp.verification`` recomputes from the
public definitions (``parse_result_line``, ``row_leaf``, ``leaf_bytes``, ``leaf_hash``, RFC 6962)."""

from __future__ import annotations

import hmac

import pytest

from rqp.crypto import aad, encrypt_stream
from rqp.errors import IntegrityError
from rqp.keys import LocalKeyProvider
from rqp.merkle import HASH_SIZE, leaf_hash, tree_root
from rqp.results_root import (
    INPUTS_BLOB,
    LEAVES_BLOB,
    build_root,
    failed_leaf,
    input_key,
    leaf_bytes,
    not_run_leaf,
    parse_result_line,
    row_leaf,
)
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
    5: b'{"id":5,"result":1e999}',
    6: b'{"id":6,"result":' + b"[" * 600 + b"]" * 600 + b"}",
    7: b'{"id":7,"result":' + b"[" * 300 + b"]" * 300 + b"}",
    8: b'{"id":8,"result":{"a":1,"a":2}}',
    9: b'{"id":9,"result":1}',
    10: b'{"id":10,"result":"\xff"}',
    11: b'{"id":11,"error":"result is not valid JSON: not valid JSON"}',
    12: b'{"id":12,"result":1} ',
    14: b'{"id":14,"result":{"b":{"d":4,"c":3},"a":-0.0}}',
    15: b'{"id":15,"result":123456789012345678901234567890}',
}
#: failed records: (reason, the data's own id)
FAILED = {13: ("boom", None), 16: ("bad record", "k-16")}
TOTAL = 18  # record 17 never ran


@pytest.fixture
def workload(tmp_path, kek, signer):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(TOTAL)))
    script = tmp_path / "s.py"
    script.write_text("def process(r):\n    return r\n")
    store = FileBlobStore(tmp_path / "blobs")
    pack(store, LocalKeyProvider(public_key_file=kek[1]), "w1", data, script, signer=signer.key)
    return store, Workload.open(store, LocalKeyProvider(private_key_file=kek[0]), "w1", signer.trust), data


def _expected(w: Workload, payloads: list[bytes]) -> list[bytes]:
    """Each record's leaf hash from the public definitions, one record at a time."""
    k = input_key(w.key, w.id)
    out = []
    for rid in range(TOTAL):
        mac = hmac.digest(k, rid.to_bytes(8, "big") + payloads[rid], "sha256")  # bound to its id
        if rid in LINES:
            doc = parse_result_line(LINES[rid])
            kind, digest = row_leaf(doc)
            key = doc.get("key")
        elif rid in FAILED:
            (kind, digest), key = failed_leaf(FAILED[rid][0]), FAILED[rid][1]
        else:
            (kind, digest), key = not_run_leaf(), None
        out.append(leaf_hash(leaf_bytes(rid, None if key is None else str(key), mac, kind, digest)))
    return out


@pytest.mark.parametrize("piece", [7, 1 << 16])
def test_every_leaf_and_the_root_are_the_documented_ones(workload, piece):
    store, w, data = workload
    payloads = [line for line in data.read_bytes().split(b"\n") if line]
    body = b"".join(LINES[rid] + b"\n" for rid in sorted(LINES))
    results = blob_name(w.id, "results.enc")
    pieces = [body[i : i + piece] for i in range(0, len(body), piece)]
    store.put_stream(results, encrypt_stream(w.key, iter(pieces), aad("results", w.id), segment_size=piece))
    failures = [Failure(rid, reason, 1, key) for rid, (reason, key) in FAILED.items()]

    att = build_root(store, w, iter(payloads), results, failures, TOTAL, None)

    want = _expected(w, payloads)
    raw = store.get(blob_name(w.id, LEAVES_BLOB))
    got = [raw[i : i + HASH_SIZE] for i in range(0, len(raw), HASH_SIZE)]
    assert [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b] == []
    assert att.root == tree_root(want)[0]
    assert att.size == TOTAL
    # the kinds the lines were meant to exercise are all there
    kinds = {row_leaf(parse_result_line(line))[0] for line in LINES.values()}
    assert kinds == {"result", "error"}
    inputs = store.get(blob_name(w.id, INPUTS_BLOB))
    assert len(inputs) == TOTAL * HASH_SIZE


@pytest.mark.parametrize("key_size", [0, 1, 32, 63, 64, 65, 200])
def test_the_input_digest_is_hmac_sha256(key_size):
    """The input digests' HMAC (keyed states made once, RFC 2104) is the standard library's, for
    keys shorter than, equal to and longer than SHA-256's block, and messages of any size."""
    from rqp.results_root import _hmac_sha256

    key = bytes(range(key_size % 256)) * (key_size // 256 + 1)
    key = key[:key_size]
    digest = _hmac_sha256(key)
    for msg in (b"", b"a", b"x" * 55, b"y" * 64, b"z" * 1000, bytes(range(256)) * 9):
        assert digest(msg) == hmac.new(key, msg, "sha256").digest()


def test_the_batched_input_digests_are_each_records_input_digest(workload):
    """``input_digests`` (the enqueue's, one call per batch) gives ``input_digest`` of each record
    under ``input_key``, bound to its id from ``first`` on."""
    from rqp.results_root import input_digest, input_digests

    _store, w, _data = workload
    payloads = [b"", b"a", b"x" * 1000, b'{"n": 1}']
    k = input_key(w.key, w.id)
    assert input_digests(w)(7, iter(payloads)) == b"".join(input_digest(k, 7 + i, p) for i, p in enumerate(payloads))
    assert input_digests(w)(0, []) == b""


#: lines whose row the root's inline parse (``_row``) must read exactly as the public definition
#: does, or leave to it
EDGE_LINES = [
    *LINES.values(),
    b'{"id":20,"result": 5}',  # a space before the value
    b'{"id":21,"result":5 }',  # and after it
    b'{"id":22,"result":1,"result":2}',  # the name twice in the line's own object
    b'{"id":023,"result":1}',  # a leading zero: not JSON
    b'{"id":-24,"result":1}',
    b'{"id":\xd9\xa1,"result":1}',  # a digit that is not ASCII
    b'{"id":26,"result":{"b":[1,{"y":2,"x":1}],"a":"\\u2028"}}',
    b'{"id":27,"result":[1,2]',  # cut short
    b'{"id":28,"result":"a"}}',
    b'{"id":29,"result":NaN}',
    b'{"id":30,"result":{"a":1,"a":1}}',
    b'{"id":31,"result":1e999}',
    b'{"id":32,"result":-0.0}',
    b'{"id":33,"result":"x","key":"k"}',
]


@pytest.mark.parametrize("line", EDGE_LINES)
def test_each_line_reads_as_its_public_definition_whatever_path_takes_it(line):
    from rqp.results_root import _row

    doc = parse_result_line(line)
    assert _row(line) == (doc.get("id"), doc.get("key"), *row_leaf(doc))


@pytest.mark.parametrize(
    "line",
    [
        b'{"id":9,"result":1,"x":2}',
        b'{"id":9,"result":1,"error":"FORGED: this record failed"}',  # a processor's bytes 1,"error":"..."
        b'{"id":9,"key":"k9","result":1,"error":"x"}',
    ],
)
def test_a_line_with_members_rqp_never_writes_is_refused_on_every_path(line):
    """Ninth review, G3: the leaf covers the id, the key and the result only, so a line with an
    added member (shown by 'rqp results') passed every check and was carried and signed again."""
    from rqp.results_root import _row

    with pytest.raises(IntegrityError, match="has members rqp never writes"):
        parse_result_line(line)
    with pytest.raises(IntegrityError, match="has members rqp never writes"):
        _row(line)
