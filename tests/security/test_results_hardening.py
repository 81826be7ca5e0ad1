"""The security review of verifiable results (issue #29), through the scheduler's and processor's
own code over real Redis and a real blob store: a lone surrogate in one record's result fails that
record alone, never the workload (F1), even from a processor that lets it through; equal inputs
leave no trace in ``inputs.bin`` (F10); round 1's blobs put back with the sealed head deleted or
junk are refused past the sealed round marker's floor, and never shown as plainly verified (F8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import one_line_error, run
from rounds import keep_round, put_back, retry_round

import rqp
from rqp.errors import RoundUncheckedError
from rqp.ledger import Ledger, Meta
from rqp.merkle import HASH_SIZE
from rqp.results_root import INPUTS_BLOB
from rqp.round_marker import ROUND_BLOB
from rqp.summary import read_summary
from rqp.verification import make_proof
from rqp.workload import blob_name, pack

#: echoes each record's name: record 5's holds a lone surrogate (a mis-decoded byte)
ECHO = "def process(r):\n    return {'name': r['name'], 'n': r['n']}\n"
#: record 5 always fails, every other one succeeds
FIVE = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"
#: ``rqp verify``'s exit when no sealed head confirms the round (``RoundUncheckedError``)
UNCHECKED = RoundUncheckedError.exit_code


def _signing(world, operator) -> Path:
    world.settings = world.settings.replace(results_key_file=operator.path)
    return operator.path.with_name("operator.pub.pem")


def _names() -> list[dict[str, object]]:
    out: list[dict[str, object]] = [{"n": i, "name": f"N{i}"} for i in range(20)]
    out[5]["name"] = "Al\udce9x"  # what json.dumps writes for a surrogate-escaped byte
    out[7]["note"] = "\ud800"  # in the input only: its digest must not fail either
    return out


def test_f1_one_lone_surrogate_fails_its_record_not_the_workload(world, proc, cli_env, capsys, operator, tmp_path):
    """Was: the root's canonical encoding raised UnicodeEncodeError, the workload failed as a
    whole with every result lost, and ``rqp retry --failed`` found nothing to re-run. Now: the
    record fails with one reason naming it and the surrogate; the other 19 verify; record 7 (a
    surrogate in its input) proves."""
    pub = _signing(world, operator)
    wid = world.pack("surr", _names(), ECHO)
    world.run_to_end(world.run(wid), proc)
    summary = read_summary(world.store, world.backends().workload(wid))
    assert (summary.final_state, summary.done, summary.failed) == ("done", 19, 1)
    (failure,) = summary.failures
    assert failure.id == 5 and "result of record 5 is not Unicode text: it holds a lone surrogate \\udce9" in (
        failure.error or ""
    )
    code, out, err = run(capsys, "verify", wid, "--signer", str(pub))
    assert code == 0 and f"workload {wid}: 19 records match the round 1 root" in out, (out, err)
    proof = tmp_path / "p7.json"
    proof.write_text(json.dumps(make_proof(world.store, world.backends().workload(wid), 7)))
    code, out, err = run(capsys, "verify-proof", str(proof), "--signer", str(pub), "--workload", wid, "--record", "7")
    assert code == 0 and "record 7 of workload surr (result) is in the round 1 root" in out, (out, err)


def test_f1_a_surrogate_that_reaches_the_root_anyway_digests_as_its_escape(
    world, proc, cli_env, capsys, operator, monkeypatch
):
    """Defence in depth: a processor without the per-record check (an older one) stores the
    result; the root still builds -- the surrogate digested as its JSON escape -- and verifies."""
    import rqp_processor.chunk

    monkeypatch.setattr(rqp_processor.chunk, "lone_surrogate", lambda data: None)
    pub = _signing(world, operator)
    wid = world.pack("surr-old", _names(), ECHO)
    world.run_to_end(world.run(wid), proc)
    summary = read_summary(world.store, world.backends().workload(wid))
    assert (summary.final_state, summary.done, summary.failed) == ("done", 20, 0)
    code, out, err = run(capsys, "verify", wid, "--signer", str(pub))
    assert code == 0 and "20 records match the round 1 root" in out, (out, err)


def test_f10_equal_inputs_leave_no_trace_in_the_input_digests(world, proc, operator):
    """Was: ``inputs.bin`` (plain in the blob store) showed which records had equal inputs (the
    yes/no split of the data). Now each digest is bound to its record: all differ."""
    _signing(world, operator)
    wid = world.pack("yn", [{"v": "yes" if i % 3 else "no"} for i in range(24)], "def process(r):\n    return r['v']\n")
    world.run_to_end(world.run(wid), proc)
    raw = world.store.get(blob_name(wid, INPUTS_BLOB))
    digests = {raw[i : i + HASH_SIZE] for i in range(0, len(raw), HASH_SIZE)}
    assert len(raw) == 24 * HASH_SIZE and len(digests) == 24


@pytest.mark.parametrize("head", ["deleted", "junk"])
def test_f8_an_older_round_with_the_head_gone_is_never_plainly_verified(world, proc, cli_env, capsys, operator, head):
    """Was: with the sealed head deleted or junk, round 1's blobs put back after round 2 verified
    as round 1, silently. Now: the sealed round marker (round 2 begun) is the floor -- round 1
    is said to be unchecked, and after round 3 it is refused; with the marker gone too, the
    line says no head and no marker were there. A junk head is not "no head" (atk5 C4): it does
    not open under this generation's key, which only ``--any-round=older`` takes, whatever the
    marker says -- and the line says so."""
    _signing(world, operator)
    wid = world.pack(f"rnd-{head}", [{"n": i} for i in range(12)], FIVE)
    world.run_to_end(world.run(wid), proc)
    round1 = keep_round(world, wid)
    retry_round(world, proc, operator, wid)
    round2 = keep_round(world, wid)
    meta = Ledger(world.r, wid).k.meta

    def tamper() -> None:
        if head == "deleted":
            world.r.hdel(meta, Meta.HEAD)
        else:
            world.r.hset(meta, Meta.HEAD, "junk")

    sealed = world.r.hget(meta, Meta.HEAD)
    put_back(world, wid, round1)
    tamper()
    code, out, err = run(capsys, "verify", wid)
    if head == "junk":
        foreign = "Redis holds a sealed head that does not open under this generation's key"
        assert code == UNCHECKED and not out and foreign in one_line_error(err), (out, err)
        code, out, err = run(capsys, "verify", wid, "--any-round")  # the routine --any-round does not take it
        assert code == UNCHECKED and not out and "--any-round=older" in one_line_error(err), err
        code, out, _ = run(capsys, "verify", wid, "--any-round=older")
        assert code == 0 and "11 records match the round 1 root" in out and "does not open under this" in out, out
        return
    assert code == UNCHECKED and "11 records match the round 1 root" in out, (out, err)
    assert "(round not checked: the sealed round marker says round 2 was begun" in out, out
    assert "round 1 could not be checked as the current one" in one_line_error(err), err
    # the marker names a later round than the one shown: a routine --any-round does not take it
    # (atk3's note), only the explicit --any-round=older
    code, out, err = run(capsys, "verify", wid, "--any-round")
    assert code == UNCHECKED and "--any-round=older" in one_line_error(err), err
    code, out, _ = run(capsys, "verify", wid, "--any-round=older")
    assert code == 0 and "(round not checked: the sealed round marker says round 2" in out, out
    # the round-2 blobs: nothing but the head could say they are current -- not checked either
    put_back(world, wid, round2)
    code, out, _ = run(capsys, "verify", wid)
    assert code == UNCHECKED and "round 2 root" in out and "round not checked: no sealed head" in out, out
    # a third round: round 1 put back is now below the marker's floor, refused with one line
    world.r.hset(meta, Meta.HEAD, sealed)
    retry_round(world, proc, operator, wid)
    put_back(world, wid, round1)
    tamper()
    code, _, err = run(capsys, "verify", wid)
    assert code == 4 and "summary.enc is round 1 but" in one_line_error(err), err
    # both the head and the marker gone (an attacker holding Redis and the blob store): said so
    world.store.delete(blob_name(wid, ROUND_BLOB))
    code, out, _ = run(capsys, "verify", wid)
    assert code == UNCHECKED and "round not checked: no sealed head in Redis and no round marker" in out, out


def test_n3_an_older_round_put_back_with_its_own_marker_is_not_plainly_verified(world, proc, cli_env, capsys, operator):
    """Was: after round 3, round 2's blobs put back WITH round 2's own (genuine) round.enc and the
    sealed head deleted (or Redis's keys expired after the status TTL) verified plainly as round 2,
    exit 0, no note. Every round's marker is genuine, so only the sealed head proves which round is
    current: without it ``rqp verify`` says the round was not checked and exits non-zero unless
    ``--any-round``; the client raises ``RoundUncheckedError`` unless ``any_round=True``."""
    pub = _signing(world, operator)
    wid = world.pack("rnd-replay", [{"n": i} for i in range(12)], FIVE)
    world.run_to_end(world.run(wid), proc)
    retry_round(world, proc, operator, wid)
    round2 = {**keep_round(world, wid), ROUND_BLOB: world.store.get(blob_name(wid, ROUND_BLOB))}
    retry_round(world, proc, operator, wid)
    code, out, _ = run(capsys, "verify", wid)
    assert code == 0 and "round 3 root" in out and "not checked" not in out, out  # the head confirms it
    put_back(world, wid, round2)
    world.r.hdel(Ledger(world.r, wid).k.meta, Meta.HEAD)
    code, out, err = run(capsys, "verify", wid)
    assert code == UNCHECKED and "round 2 root" in out and "(round not checked: no sealed head" in out, out
    line = one_line_error(err)
    assert "round 2 could not be checked as the current one" in line and "--any-round" in line, line
    code, out, _ = run(capsys, "verify", wid, "--any-round")
    assert code == 0 and "round 2 root" in out and "(round not checked: no sealed head" in out, out
    code, out, err = run(capsys, "status", wid)  # its sealed counts, but not "verified": exit 4, said why
    assert code == 4 and "unverified: these are its sealed counts, but round not checked: no sealed head" in out, (
        out,
        err,
    )
    code, out, _ = run(capsys, "status", wid, "--json")
    assert code == 4 and '"verified": false' in out and '"round_note": "round not checked' in out, out
    client = rqp.Client(
        redis_url=world.settings.redis_url,
        blob_url=world.settings.blob_url,
        kek_file=str(world.settings.kek_file),
        allow_insecure_redis=True,
    )
    try:
        w = client.workload(wid)
        with pytest.raises(RoundUncheckedError, match="round 2 could not be checked as the current one"):
            w.verify(signer=pub)
        report = w.verify(signer=pub, any_round=True)
        assert report.round == 2 and "round not checked" in report.note
        assert w.status().verified is False  # the sealed counts, but not confirmed current
    finally:
        client.close()


def test_n10_no_proof_is_issued_from_a_swapped_inputs_bin(world, proc, cli_env, capsys, operator):
    """Was: with records 1 and 2's input digests swapped in inputs.bin (a blob-store writer),
    ``rqp proof`` issued a proof carrying record 2's digest for record 1, which failed only at the
    consumer's verify-proof. Now the record's leaf is recomputed from its parts and compared with
    leaves.bin (which folds into the signed root) first: refused with one line naming inputs.bin."""
    _signing(world, operator)
    wid = world.pack("swap", [{"n": i} for i in range(8)], FIVE)
    world.run_to_end(world.run(wid), proc)
    code, _, err = run(capsys, "proof", wid, "--record", "1")
    assert code == 0, err
    raw = world.store.get(blob_name(wid, INPUTS_BLOB))
    one, two = raw[HASH_SIZE : 2 * HASH_SIZE], raw[2 * HASH_SIZE : 3 * HASH_SIZE]
    world.store.put(blob_name(wid, INPUTS_BLOB), raw[:HASH_SIZE] + two + one + raw[3 * HASH_SIZE :])
    for rid in ("1", "2"):
        code, out, err = run(capsys, "proof", wid, "--record", rid)
        line = one_line_error(err)
        assert code == 4 and not out, (out, err)
        assert f"record {rid} of workload {wid} does not hash to its leaf in leaves.bin: inputs.bin" in line, line
    code, out, err = run(capsys, "proof", wid, "--record", "3")  # an untouched record: still issued
    assert code == 0 and json.loads(out)["record"]["id"] == 3, err


def _pack_keyed(world, wid: str, keys: list[str]) -> str:
    data = world.root / f"{wid}.jsonl"
    data.write_text("".join(json.dumps({"uid": k, "n": i}) + "\n" for i, k in enumerate(keys)))
    script = b"def process(r):\n    return {'score': r['n'] * 10}\n"
    pack(world.store, world.keys, wid, data, script, signer=world.signer.key, id_field="uid")
    return wid


def test_n6_a_key_that_names_two_records_is_refused_by_proof_and_verify_proof(
    world, proc, cli_env, capsys, operator, tmp_path
):
    """Was: with key "k3" on records 3 and 7, ``rqp proof --key k3`` gave record 3 and
    ``verify-proof --key k3`` accepted record 7's proof too. Now the signed statement says
    ``unique_keys`` (the scheduler learns it building the leaves): both refuse ``--key`` when it is
    false, with one line; a workload of unique keys proves by key as before."""
    pub = _signing(world, operator)
    dup = _pack_keyed(world, "dupk", [f"k{i}" if i != 7 else "k3" for i in range(12)])
    uniq = _pack_keyed(world, "uniqk", [f"k{i}" for i in range(12)])
    for wid in (dup, uniq):
        world.run_to_end(world.run(wid), proc)
    assert read_summary(world.store, world.backends().workload(dup)).root["statement"]["unique_keys"] is False
    code, out, err = run(capsys, "proof", dup, "--key", "k3")
    assert (
        code == 7
        and not out
        and "workload dupk: its signed root does not say its keys are unique" in one_line_error(err)
    ), err
    seven = tmp_path / "dk7.json"
    assert run(capsys, "proof", dup, "--record", "7", "-o", str(seven))[0] == 0
    code, out, err = run(capsys, "verify-proof", str(seven), "--signer", str(pub), "--workload", dup, "--key", "k3")
    assert code == 4 and "--key cannot be checked for workload dupk" in one_line_error(err), (out, err)
    code, out, err = run(capsys, "verify-proof", str(seven), "--signer", str(pub), "--record", "7")
    assert code == 0 and "record 7 of workload dupk" in out, err
    # unique keys: by key, as before
    three = tmp_path / "u3.json"
    assert run(capsys, "proof", uniq, "--key", "k3", "-o", str(three))[0] == 0
    assert json.loads(three.read_text())["statement"]["unique_keys"] is True
    code, out, err = run(capsys, "verify-proof", str(three), "--signer", str(pub), "--workload", uniq, "--key", "k3")
    assert code == 0 and "record 3 of workload uniqk" in out, err
