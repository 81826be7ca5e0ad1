import json

import pytest

from rqp.errors import IntegrityError
from rqp.keys import LocalKeyProvider
from rqp.messages import make_envelope, open_envelope, pack_messages, pack_statuses
from rqp.status import StatusRecord
from rqp.storage import FileBlobStore
from rqp.workload import Workload, pack


@pytest.fixture
def workload(tmp_path, kek, signer):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"n": 1}\n')
    script = tmp_path / "s.py"
    script.write_text("def process(r):\n    return r\n")
    store = FileBlobStore(tmp_path / "blobs")
    pack(store, LocalKeyProvider(public_key_file=kek[1]), "w1", data, script, signer=signer.key)
    return Workload.open(store, LocalKeyProvider(private_key_file=kek[0]), "w1", signer.trust)


def test_compact_status_messages_expand_to_full_records(workload):
    fmt = StatusRecord.formatter("w1", "done", 1.5, 2.25, "host:1", "rqp-w1-c00000000-0")
    done = [(rid, 1 + rid % 2, 3.0 + rid / 1000) for rid in range(2000)]
    failed = StatusRecord(
        "w1", 2000, "failed", 3, 'process() raised ValueError: "x"', 1.5, 2.25, 4.0, "host:1", "rqp-w1-c00000000-0"
    ).to_json()
    rows = [b"[%d,%d,%r]" % d for d in done]
    messages = pack_statuses(workload, fmt(0, 0, None), rows, [failed], 8192)
    assert all(len(body) <= 8192 for _mid, body in messages)
    full = pack_messages(workload, "status", [fmt(*d) for d in done] + [failed], 8192)
    assert len(messages) * 4 < len(full)  # the point: far fewer messages for the same records
    got = []
    for _mid, body in messages:
        env = open_envelope(body, lambda wid: workload)
        assert env.kind == "status"
        got += env.payload
    expected = [json.loads(fmt(*d)) for d in done] + [json.loads(failed)]
    assert got == expected
    assert [list(r) for r in got] == [list(r) for r in expected]  # same field order as stored records
    assert pack_statuses(workload, fmt(0, 0, None), [], [], 8192) == []


def test_status_message_with_an_unknown_payload_is_one_clear_error(workload):
    _mid, body = make_envelope(workload, "status", {"something": "else"})
    with pytest.raises(IntegrityError, match="has a payload rqp cannot read"):
        open_envelope(body, lambda wid: workload)
