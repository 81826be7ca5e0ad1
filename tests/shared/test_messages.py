import json
import time

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


# ---------------------------------------------------------------------------------------- retention
# A real Redis (the `r` fixture): the streams' bound holds, and what a group has not read survives.
QUEUE = "rqp-status"
KEY = "rqp:mq:" + QUEUE


def _queue(r, **retention):
    from rqp.storage import RedisMessageQueue
    from rqp.storage.retention import Retention

    return RedisMessageQueue(r, retention=Retention(every_seconds=0, **retention))


def test_with_no_consumer_a_stream_stays_within_its_length(r):
    """The issue's case: nobody reads the status queue; the senders' own group holds nothing back."""
    mq = _queue(r, max_entries=50)
    mq.send_many(QUEUE, [b"x%d" % i for i in range(120)])
    for i in range(30):
        mq.send(QUEUE, b"y%d" % i)
    assert r.xlen(KEY) == 50
    # the newest were kept, in order
    assert [f[b"b"] for _id, f in r.xrange(KEY)][-3:] == [b"y27", b"y28", b"y29"]
    assert mq.trim(QUEUE).warning is None


def test_messages_older_than_the_age_bound_go(r):
    old = f"{int(time.time() * 1000) - 3_600_000}-0"  # an hour ago
    r.xadd(KEY, {b"b": b"old"}, id=old)
    mq = _queue(r, max_age_seconds=60)
    mq.send(QUEUE, b"new")
    assert [f[b"b"] for _id, f in r.xrange(KEY)] == [b"new"]


def test_what_a_reading_group_has_not_read_survives_the_bound_with_a_warning(r, caplog):
    mq = _queue(r, max_entries=10)
    mq.send_many(QUEUE, [b"a%d" % i for i in range(5)])
    got = mq.receive(QUEUE, 3)  # a consumer joins the group and reads three
    for m in got[:2]:
        mq.delete(QUEUE, m)  # acknowledges two; the third stays pending (read, not acknowledged)
    with caplog.at_level("WARNING", logger="rqp.queue"):
        mq.send_many(QUEUE, [b"b%d" % i for i in range(40)])
    bodies = [f[b"b"] for _id, f in r.xrange(KEY)]
    assert bodies == [b"a2", b"a3", b"a4", *[b"b%d" % i for i in range(40)]]  # nothing unread or pending went
    warning = mq.trim(QUEUE).warning
    assert warning and "43 messages, past RQP_QUEUE_MAX_ENTRIES=10" in warning and "'rqp'" in warning
    assert any("RQP_QUEUE_KEEP_UNREAD=false" in rec.getMessage() for rec in caplog.records)
    # once the consumer catches up, the backlog and the warning are gone
    while batch := mq.receive(QUEUE, 50, visibility_timeout=0):
        for m in batch:
            mq.delete(QUEUE, m)
    assert r.xlen(KEY) == 0 and mq.trim(QUEUE).warning is None


def test_read_messages_below_the_unread_ones_go_first(r):
    """Messages every reading group has read are trimmed; the unread above them stay."""
    mq = _queue(r, max_entries=5)
    ids = [r.xadd(KEY, {b"b": b"r%d" % i}) for i in range(8)]
    r.xgroup_create(KEY, "other", id="0")
    r.xreadgroup("other", "c1", {KEY: ">"}, count=6)  # 'other' read six, acknowledged them
    r.xack(KEY, "other", *ids[:6])
    mq.send(QUEUE, b"new")  # the senders' group 'rqp' has no consumer: it holds nothing back
    assert [f[b"b"] for _id, f in r.xrange(KEY)] == [b"r4", b"r5", b"r6", b"r7", b"new"]
    r.delete(KEY)
    ids = [r.xadd(KEY, {b"b": b"r%d" % i}) for i in range(8)]
    r.xgroup_create(KEY, "other", id="0")
    r.xreadgroup("other", "c1", {KEY: ">"}, count=2)
    r.xack(KEY, "other", *ids[:2])
    mq.send(QUEUE, b"new")
    assert [f[b"b"] for _id, f in r.xrange(KEY)] == [b"r%d" % i for i in range(2, 8)] + [b"new"]


def test_keep_unread_off_lets_the_bound_drop_unread_messages(r):
    mq = _queue(r, max_entries=4, keep_unread=False)
    mq.send_many(QUEUE, [b"a%d" % i for i in range(3)])
    mq.receive(QUEUE, 1)
    mq.send_many(QUEUE, [b"b%d" % i for i in range(6)])
    assert [f[b"b"] for _id, f in r.xrange(KEY)] == [b"b2", b"b3", b"b4", b"b5"]


def test_retention_comes_from_the_settings(r, redis_url):
    from rqp.config import Settings
    from rqp.connect import open_message_queue
    from rqp.errors import ConfigError

    s = Settings.load(env={"RQP_REDIS_URL": redis_url, "RQP_ALLOW_INSECURE_REDIS": "true",
                           "RQP_QUEUE_MAX_ENTRIES": "7", "RQP_QUEUE_MAX_AGE_HOURS": "2",
                           "RQP_QUEUE_KEEP_UNREAD": "false"})  # fmt: skip
    mq = open_message_queue(s, r)
    assert (mq.retention.max_entries, mq.retention.max_age_seconds, mq.retention.keep_unread) == (7, 7200, False)
    with pytest.raises(ConfigError, match="RQP_QUEUE_MAX_ENTRIES and RQP_QUEUE_MAX_AGE_HOURS must not be negative"):
        Settings(queue_max_entries=-1)


def test_rqp_events_shows_the_backlog_warning(r, redis_url, kek, tmp_path, monkeypatch, capsys):
    """The warning reaches the operator reading the queue, not only the senders' logs."""
    from rqp.cli import main
    from rqp.storage import RedisMessageQueue

    for k, v in {
        "RQP_REDIS_URL": redis_url,
        "RQP_BLOB_URL": f"file://{tmp_path / 'blobs'}",
        "RQP_KEK_FILE": str(kek[0]),
        "RQP_ALLOW_INSECURE_REDIS": "true",
        "RQP_QUEUE_MAX_ENTRIES": "3",
    }.items():
        monkeypatch.setenv(k, v)
    mq = RedisMessageQueue(r)
    mq.send(QUEUE, b"first")
    mq.receive(QUEUE, 1)  # a consumer has read one: the group now keeps what it has not read
    mq.send_many(QUEUE, [b"m%d" % i for i in range(5)])
    code = main(["events", "--peek", "--max", "2"])
    err = capsys.readouterr().err
    assert code == 0, err
    warning = err.splitlines()[0]
    assert warning.startswith("rqp: warning: queue rqp-status holds 6 messages, past RQP_QUEUE_MAX_ENTRIES=3"), err
    assert r.xlen(KEY) == 6


def test_a_user_from_before_retention_sends_on_and_is_told_once(r, redis_url, caplog):
    """An ACL file rendered before retention lacks XTRIM: sending must not break, and the log says
    how to fix it (once, not per message)."""
    import redis as redis_lib

    from rqp.storage import RedisMessageQueue

    r.acl_setuser("old-role", enabled=True, passwords=["+pw"], commands=["+@all", "-xtrim", "-xinfo"], keys=["*"])
    try:
        old = redis_lib.Redis.from_url(redis_url, username="old-role", password="pw")
        mq = _queue(old, max_entries=2)
        with caplog.at_level("WARNING", logger="rqp.queue"):
            for i in range(5):
                mq.send(QUEUE, b"m%d" % i)
        assert r.xlen(KEY) == 5
        said = [rec.getMessage() for rec in caplog.records if "is not trimmed" in rec.getMessage()]
        assert len(said) == 1 and "rqp redis-acl render" in said[0], said
        assert RedisMessageQueue(old).backlog_warning(QUEUE) is None
        old.close()
    finally:
        r.acl_deluser("old-role")


# ---------------------------------------------------------------------------------------- refused events
# Not sealed (``make_refusal``): a Redis writer can forge one; it must never carry a non-JSON number.
def _forged_refusal(at: str) -> bytes:
    return (
        '{"v":2,"q":"rqp-events","kind":"refused","workload":"base1","id":"x1",'
        '"refusal":{"at":' + at + ',"reason":"forged: rotate your keys"}}'
    ).encode()


@pytest.mark.parametrize("at", ['"nan"', "NaN", '"1e999"', "-Infinity", "1" + "0" * 400])
def test_a_forged_refusal_with_a_non_finite_time_is_junk(at):
    with pytest.raises(IntegrityError, match="not an rqp message"):
        open_envelope(_forged_refusal(at), lambda wid: None, "rqp-events")


def test_a_refusal_with_a_finite_time_is_shown_unverified():
    env = open_envelope(_forged_refusal("1700000000.5"), lambda wid: None, "rqp-events")
    assert env.verified is False and env.payload["at"] == 1700000000.5


def _strict(line: str) -> object:
    def refuse(name: str) -> object:
        raise AssertionError(f"not JSON: {name} in {line}")

    return json.loads(line, parse_constant=refuse)


def test_rqp_events_prints_strict_json_with_a_forged_nan_refusal(r, redis_url, kek, tmp_path, monkeypatch, capsys):
    """F9: the forged event is reported as junk on stderr, the good one printed; stdout is JSON."""
    from rqp.cli import main
    from rqp.messages import make_refusal
    from rqp.storage import RedisMessageQueue

    for k, v in {
        "RQP_REDIS_URL": redis_url,
        "RQP_BLOB_URL": f"file://{tmp_path / 'blobs'}",
        "RQP_KEK_FILE": str(kek[0]),
        "RQP_ALLOW_INSECURE_REDIS": "true",
    }.items():
        monkeypatch.setenv(k, v)
    mq = RedisMessageQueue(r)
    mq.send("rqp-events", _forged_refusal('"nan"'))
    mq.send("rqp-events", make_refusal("rqp-events", "w2", "untrusted", 1700000000.0)[1])
    code = main(["events", "--queue", "events", "--peek"])
    out, err = capsys.readouterr()
    assert code == 0, err
    printed = [_strict(line) for line in out.splitlines()]
    assert [(e["workload"], e["at"]) for e in printed] == [("w2", 1700000000.0)], out
    assert "not an rqp message" in err


def test_rqp_events_prints_a_non_finite_number_of_any_event_as_null():
    from rqp.cli.events import _json_safe

    item = {"a": float("nan"), "b": [1.5, float("inf"), {"c": -float("inf")}], "d": "NaN", "e": 2}
    assert _strict(json.dumps(_json_safe(item), allow_nan=False)) == {
        "a": None, "b": [1.5, None, {"c": None}], "d": "NaN", "e": 2,
    }  # fmt: skip
