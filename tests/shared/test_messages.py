import json

import pytest

from rqp.errors import IntegrityError
from rqp.keys import LocalKeyProvider
from rqp.messages import make_envelope, open_envelope, pack_statuses
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


def test_a_chunks_done_records_travel_as_runs_and_expand_to_full_records(workload):
    """One message of a few hundred bytes stands for a chunk's thousands of done records."""
    fmt = StatusRecord.formatter("w1", "done", 1.5, 2.25, "host:1", "rqp-w1-c00000000-0")
    base = fmt(0, 0, 3.5)
    runs = [(0, 1500, 1), (1500, 500, 2)]
    not_done = [7, 1600]
    failed = StatusRecord(
        "w1", 7, "failed", 1, 'process() raised ValueError: "x"', 1.5, 2.25, 4.0, "host:1", "rqp-w1-c00000000-0"
    ).to_json()
    messages = pack_statuses(workload, "rqp-status", base, runs, not_done, [failed], 8192)
    assert len(messages) == 2 and all(len(body) < 1200 for _mid, body in messages)
    got = []
    for _mid, body in messages:
        env = open_envelope(body, lambda wid: workload, "rqp-status")
        assert env.kind == "status"
        got += env.payload
    expected = [json.loads(fmt(rid, 1 if rid < 1500 else 2, 3.5)) for rid in range(2000) if rid not in not_done]
    assert got == [*expected, json.loads(failed)]
    assert [list(r) for r in got[:3]] == [list(r) for r in expected[:3]]  # same field order as stored records
    assert pack_statuses(workload, "rqp-status", base, [], [], [], 8192) == []


def test_too_many_exceptions_fall_back_to_rows(workload):
    fmt = StatusRecord.formatter("w1", "done", 1.5, 2.25, "host:1", "rqp-w1-c00000000-0")
    not_done = list(range(0, 4000, 2))  # every other record
    messages = pack_statuses(workload, "rqp-status", fmt(0, 0, 3.5), [(0, 4000, 1)], not_done, [], 2048)
    assert len(messages) > 1 and all(len(body) <= 2048 for _mid, body in messages)
    ids = [
        rec["id"] for _mid, body in messages for rec in open_envelope(body, lambda wid: workload, "rqp-status").payload
    ]
    assert ids == list(range(1, 4000, 2))


def test_status_message_with_an_unknown_payload_is_one_clear_error(workload):
    _mid, body = make_envelope(workload, "rqp-status", "status", {"something": "else"})
    with pytest.raises(IntegrityError, match="has a payload rqp cannot read"):
        open_envelope(body, lambda wid: workload, "rqp-status")


def test_a_message_moved_to_another_queue_is_refused(workload):
    """The destination is inside the seal: an outbox entry re-routed in Redis is skipped, not believed."""
    _mid, body = make_envelope(workload, "rqp-status", "status", [])
    with pytest.raises(IntegrityError, match=r"sealed for queue 'rqp-status' but read from 'rqp-events'"):
        open_envelope(body, lambda wid: workload, "rqp-events")
    forged = body.replace(b'"q":"rqp-status"', b'"q":"rqp-events"')  # and its label edited to match
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_envelope(forged, lambda wid: workload, "rqp-events")
