"""Signed control (issue #22 items 1-2): requests act only when a trusted key signed exactly
them, for this workload, once; the audit log is a hash chain that shows forgeries and cuts.

Every attack here is made as a Redis writer: the password, no key."""

from __future__ import annotations

import json
import threading

import pytest

from rqp.ledger import AUDIT, AUDIT_HEAD, REJECTED, WorkloadKeys
from rqp.oplog import ControlReader, ControlVerifier, SignedRequest, post, read_audit, sign_request
from rqp.signing import LocalSigningKey, TrustStore, generate_signing_key

W = "wl-ctl"


def _key(tmp_path, name):
    generate_signing_key(tmp_path / f"{name}.pem")
    return LocalSigningKey(tmp_path / f"{name}.pem")


@pytest.fixture
def keys(tmp_path):
    op, sub, stranger = _key(tmp_path, "op"), _key(tmp_path, "sub"), _key(tmp_path, "stranger")
    (tmp_path / "operators.pem").write_bytes(b"# ops\n" + op.public_pem())
    (tmp_path / "signers.pem").write_bytes(b"# alice\n" + sub.public_pem() + b"# bob\n" + stranger.public_pem())
    return {
        "op": op,
        "sub": sub,
        "stranger": stranger,
        "operators": TrustStore.from_file(tmp_path / "operators.pem"),
        "signers": TrustStore.from_file(tmp_path / "signers.pem"),
    }


def _running(r, wid=W):
    r.hset(WorkloadKeys(wid).meta, mapping={"state": "running"})


def _reader(r, keys, wid=W, created=0.0):
    verifier = ControlVerifier(keys["operators"], keys["signers"], keys["sub"].fingerprint)
    return ControlReader(r, wid, verifier, created, "test:1")


def _rejections(r):
    return [json.loads(x)["reason"] for x in r.lrange(REJECTED, 0, -1)]


def test_a_signed_pause_folds_to_paused_and_resume_back(r, keys):
    _running(r)
    reader = _reader(r, keys)
    ok, shown, _ = post(r, keys["op"], W, "pause", "", "alice@host", advisory="pause")
    assert ok and shown == "paused"
    assert [q.action for q in reader.poll()] == ["pause"]
    assert reader.state.paused
    post(r, keys["op"], W, "resume", "", "alice@host", advisory="resume")
    reader.poll()
    assert not reader.state.paused


def test_a_forged_meta_cancel_changes_nothing(r, keys):
    _running(r)
    reader = _reader(r, keys)
    r.hset(WorkloadKeys(W).meta, mapping={"control": "cancel", "state": "cancelling"})
    assert reader.poll() == []
    assert not reader.state.cancelling and not reader.state.paused


@pytest.mark.parametrize("how", ["untrusted", "unsigned", "altered", "other-workload", "too-old", "future"])
def test_requests_that_do_not_verify_are_refused_and_recorded(r, keys, how):
    _running(r)
    reader = _reader(r, keys, created=1_000_000.0)
    now = 2_000_000.0
    if how == "untrusted":
        raw = sign_request(keys["stranger"], W, "cancel", "", "mallory", at=now).raw
    elif how == "unsigned":
        raw = json.dumps({"at": now, "who": "mallory", "what": "cancel", "workload": W}).encode()
    elif how == "altered":
        doc = json.loads(sign_request(keys["op"], W, "pause", "", "alice", at=now).raw)
        doc["req"]["action"] = "cancel"
        raw = json.dumps(doc).encode()
    elif how == "other-workload":
        raw = sign_request(keys["op"], "another", "cancel", "", "alice", at=now).raw
    elif how == "too-old":  # made for an earlier workload of the same id
        raw = sign_request(keys["op"], W, "cancel", "", "alice", at=10.0).raw
    else:
        raw = sign_request(keys["op"], W, "cancel", "", "alice", at=now + 3600).raw
    r.rpush(WorkloadKeys(W).control, raw)
    assert reader.poll(now=now) == []
    assert not reader.state.cancelling
    reasons = _rejections(r)
    assert len(reasons) == 1 and W in reasons[0]


def test_a_replayed_request_is_refused(r, keys):
    _running(r)
    reader = _reader(r, keys)
    post(r, keys["op"], W, "pause", "", "alice", advisory="pause")
    post(r, keys["op"], W, "resume", "", "alice", advisory="resume")
    reader.poll()
    assert not reader.state.paused
    pause = r.lindex(WorkloadKeys(W).control, 0)
    r.rpush(WorkloadKeys(W).control, pause)  # the captured pause, again
    assert reader.poll() == []
    assert not reader.state.paused
    assert any("replayed" in x for x in _rejections(r))


def test_a_list_rewritten_under_the_reader_replays_nothing(r, keys):
    _running(r)
    reader = _reader(r, keys)
    post(r, keys["op"], W, "pause", "", "alice", advisory="pause")
    post(r, keys["op"], W, "resume", "", "alice", advisory="resume")
    reader.poll()
    pause = r.lindex(WorkloadKeys(W).control, 0)
    r.delete(WorkloadKeys(W).control)
    r.rpush(WorkloadKeys(W).control, pause)
    reader.poll()
    assert not reader.state.paused


def test_the_submitter_may_control_its_own_workload_only(r, keys):
    _running(r)
    _running(r, "other")
    mine = _reader(r, keys)
    verifier = ControlVerifier(keys["operators"], keys["signers"], keys["stranger"].fingerprint)
    theirs = ControlReader(r, "other", verifier, 0.0, "test:1")
    post(r, keys["sub"], W, "pause", "", "alice", advisory="pause")
    post(r, keys["sub"], "other", "pause", "", "alice", advisory="pause")
    mine.poll()
    theirs.poll()
    assert mine.state.paused
    assert not theirs.state.paused


def test_an_unknown_workload_writes_nothing(r, keys):
    ok, shown, signed = post(r, keys["op"], "dmeo", "cancel", "", "alice", advisory="cancel")
    assert (ok, shown, signed) == (False, "", None)
    assert r.keys("*") == []


def test_the_audit_chain_verifies(r, keys):
    _running(r)
    for action in ("pause", "resume", "cancel"):
        post(r, keys["op"], W, action, "", "alice@host", advisory=action)
    post(r, keys["sub"], W, "priority", "high", "bob@host")
    entries = read_audit(r, keys["operators"], keys["signers"])
    assert [e.what for e in entries] == ["priority high", "cancel", "resume", "pause"]
    assert all(e.verified and not e.cut for e in entries), entries


def test_forged_and_altered_audit_entries_are_marked(r, keys):
    _running(r)
    post(r, keys["op"], W, "pause", "", "alice", advisory="pause")
    r.lpush(AUDIT, json.dumps({"at": 1.0, "who": "alice (console)", "what": "delete --shred", "workload": W}))
    entries = read_audit(r, keys["operators"], keys["signers"])
    assert not entries[0].verified and "unsigned" in entries[0].note
    assert entries[0].what == "delete --shred"
    assert entries[1].verified
    # an altered one: its signature no longer matches
    raw = json.loads(r.lindex(AUDIT, 1))
    raw["req"]["actor"] = "bob"
    r.lset(AUDIT, 1, json.dumps(raw, sort_keys=True, separators=(",", ":")))
    entries = read_audit(r, keys["operators"], keys["signers"])
    assert not entries[1].verified and "altered" in entries[1].note


def test_a_removed_entry_is_a_cut_between_its_neighbours(r, keys):
    _running(r)
    for action in ("pause", "resume", "pause", "resume"):
        post(r, keys["op"], W, action, "", "alice", advisory=action)
    middle = r.lindex(AUDIT, 2)
    r.lrem(AUDIT, 1, middle)
    entries = read_audit(r, keys["operators"], keys["signers"])
    assert [bool(e.cut) for e in entries] == [False, True, False]
    assert all(e.verified for e in entries)


def test_removing_the_newest_entries_shows(r, keys):
    _running(r)
    for action in ("pause", "resume"):
        post(r, keys["op"], W, action, "", "alice", advisory=action)
    r.lpop(AUDIT)
    entries = read_audit(r, keys["operators"], keys["signers"])
    assert "newer entries removed" in entries[0].cut


def test_concurrent_posters_both_land_in_one_chain(r, keys):
    _running(r)
    errors: list[BaseException] = []

    def poster(n):
        try:
            for _ in range(10):
                post(r, keys["op"], W, "priority", "high" if n else "low", f"p{n}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=poster, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entries = read_audit(r, keys["operators"], keys["signers"])
    assert len(entries) == 20 and all(e.verified and not e.cut for e in entries)
    assert r.get(AUDIT_HEAD).decode() == SignedRequest.decode(r.lindex(AUDIT, 0)).digest


def test_a_request_bound_to_another_version_is_refused(r, keys):
    """Review of #22: a captured cancel of a workload deleted and packed anew under the same id
    (inside the clock-skew window) is refused: it names the other version's manifest digest."""
    _running(r)
    verifier = ControlVerifier(keys["operators"], keys["signers"], keys["sub"].fingerprint)
    reader = ControlReader(r, W, verifier, 1_000.0, "test:1", manifest="b" * 64)
    old = sign_request(keys["op"], W, "cancel", "", "alice", at=999.0, manifest="a" * 64)
    unbound = sign_request(keys["op"], W, "cancel", "", "alice", at=999.0)
    for raw in (old.raw, unbound.raw):
        r.rpush(WorkloadKeys(W).control, raw)
    assert reader.poll(now=1_001.0) == []
    assert not reader.state.cancelling
    reasons = _rejections(r)
    assert any("another version" in x for x in reasons) and any("older than the workload" in x for x in reasons)
    current = sign_request(keys["op"], W, "pause", "", "alice", at=999.0, manifest="b" * 64)  # clock skew is fine
    r.rpush(WorkloadKeys(W).control, current.raw)
    assert [q.action for q in reader.poll(now=1_001.0)] == ["pause"]


def test_reordering_the_list_does_not_change_what_it_adds_up_to(r, keys):
    """Review of #22: pause then resume, swapped in the list behind rqp's back, still fold to running
    for a scheduler that reads them afresh (requests apply in the order they were signed)."""
    _running(r)
    post(r, keys["op"], W, "pause", "", "alice", advisory="pause")
    post(r, keys["op"], W, "resume", "", "alice", advisory="resume")
    key = WorkloadKeys(W).control
    first, second = r.lrange(key, 0, -1)
    r.lset(key, 0, second)
    r.lset(key, 1, first)
    reader = _reader(r, keys)
    reader.poll()
    assert not reader.state.paused


def test_a_junk_audit_head_neither_blocks_operators_nor_hides(r, keys):
    """Review of #22: bytes that are not a digest in rqp:audit:head do not stop control (the next
    request links to their hash) and the chain shows the cut."""
    _running(r)
    post(r, keys["op"], W, "pause", "", "alice", advisory="pause")
    r.set(AUDIT_HEAD, b"\xff\xfe junk")
    ok, shown, _ = post(r, keys["op"], W, "resume", "", "alice", advisory="resume")
    assert ok and shown == "running"
    entries = read_audit(r, keys["operators"], keys["signers"])
    assert entries[0].verified and entries[0].cut
