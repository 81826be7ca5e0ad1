"""The third review of verifiable results (issue #29, atk3), over real Redis, a real blob store and
the scheduler's and processor's own code:

* A1 -- ``rqp proof`` and ``rqp results`` (and the client's ``proof()``/``results()``) hand out a
  round no sealed head confirms only with ``--any-round`` (exit 11 otherwise, as ``rqp verify``),
  and a round the sealed round marker says was followed by a later one only with
  ``--any-round=older`` (the ``--any-round`` note: kept apart from a routine ``--any-round``);
* A9 -- the floor refusal names the round marker, not an absent head; ``rqp list``'s ``done*``
  footnote says the round was not checked, not "no KEK";
* A3 -- a superseded generation's proof (``rqp pack --replace``, rounds from 1 again) is refused by
  ``verify-proof --manifest``, ``check_proof(Expected(manifest=...))`` and the README check's
  ``manifest=``, with the digest ``rqp verify`` prints;
* A8 -- a keyed workload with a record refused at enqueue (its key unrecorded) does not claim its
  keys unique: ``rqp proof --key`` refuses instead of picking one of two records.

and the fourth (atk4): B1 a whole superseded generation put back under the new one's head needs
``--any-round=older``; B4 ``rqp results`` never shows an older generation once the current one
ended; B2 the client's ``failures()``/``stream()``/``verify_streamed()`` take the round rule; B6
``wait()`` returns an ended workload whose round no head confirms; B8 a cancelled keyed workload
does not claim unique keys; B3 every proof checker refuses non-integer numbers, another key and an
empty pin alike; N-a a proof of the round before a running retry round says so.
"""

# ruff: noqa: F811 - the world fixtures are imported by name, then taken as arguments
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import one_line_error, run
from rounds import ROUND_BLOBS, keep_round, put_back, retry_round
from world import cli_env, proc, world  # noqa: F401 - fixtures

import rqp
from rqp import control
from rqp.errors import IntegrityError, RoundUncheckedError
from rqp.ledger import Ledger, Meta
from rqp.proof_check import Expected, check_proof
from rqp.summary import SUMMARY_BLOB, read_summary
from rqp.workload import blob_name, pack

from .test_cli_verify import _readme_check

#: record 5 always fails (so ``rqp retry --failed`` always has a round to run), the rest succeed
FIVE = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"
UNCHECKED = RoundUncheckedError.exit_code


def _signing(world, operator) -> Path:
    world.settings = world.settings.replace(results_key_file=operator.path)
    return operator.path.with_name("operator.pub.pem")


def _client(world) -> rqp.Client:
    return rqp.Client(
        redis_url=world.settings.redis_url,
        blob_url=world.settings.blob_url,
        kek_file=str(world.settings.kek_file),
        allow_insecure_redis=True,
    )


def test_a1_proof_and_results_of_an_unconfirmed_round_need_any_round_and_a_superseded_one_older(
    world, proc, cli_env, capsys, operator, tmp_path
):
    """Was (A1): with the sealed head deleted and round 1's blobs put back under the round-2
    marker, ``rqp proof`` wrote a round-1 proof and ``rqp results`` printed round 1's results,
    exit 0, not a word; ``rqp verify --any-round`` accepted that superseded round like any other."""
    pub = _signing(world, operator)
    wid = world.pack("a1", [{"n": i} for i in range(12)], FIVE)
    world.run_to_end(world.run(wid), proc)
    round1 = keep_round(world, wid)
    retry_round(world, proc, operator, wid)
    round2 = keep_round(world, wid)
    meta = Ledger(world.r, wid).k.meta
    sealed = world.r.hget(meta, Meta.HEAD)
    # with the head: proof and results as before, no note
    code, out, err = run(capsys, "proof", wid, "--record", "0")
    assert code == 0 and json.loads(out)["round"] == 2 and not err, err

    put_back(world, wid, round1)
    world.r.hdel(meta, Meta.HEAD)
    out_file = tmp_path / "p.json"
    for argv in (
        ["proof", wid, "--record", "0", "-o", str(out_file)],
        ["proof", wid, "--record", "0", "--any-round", "-o", str(out_file)],
        ["results", wid],
        ["results", wid, "--any-round"],
        ["verify", wid, "--any-round"],
    ):
        code, out, err = run(capsys, *argv)
        line = one_line_error(err)
        assert code == UNCHECKED, (argv, out, err)
        assert "the sealed round marker says round 2 was begun" in line and "--any-round=older" in line, line
        assert not out.strip() or argv[0] == "verify", (argv, out)  # nothing handed out
        assert not out_file.exists(), argv
    code, out, err = run(capsys, "proof", wid, "--record", "0", "--any-round=older", "-o", str(out_file))
    assert code == 0 and json.loads(out_file.read_text())["round"] == 1, err
    assert "round not checked: the sealed round marker says round 2 was begun" in err, err  # said, not silent
    code, out, err = run(capsys, "results", wid, "--any-round=older")
    assert code == 0 and len(out.splitlines()) == 11 and "round 1's results (round not checked" in err, (out, err)
    assert run(capsys, "verify", wid, "--any-round=older")[0] == 0
    # A9: rqp list's footnote names the true reason
    _, out, _ = run(capsys, "list")
    assert "done*" in next(ln for ln in out.splitlines() if ln.startswith(wid)), out
    assert "round not checked" in out and "no KEK" not in out, out

    client = _client(world)
    try:
        w = client.workload(wid)
        for read in (
            lambda: w.proof(0),
            lambda: w.proof(0, any_round=True),
            lambda: list(w.results()),
            lambda: list(w.results(any_round=True)),
            lambda: w.verify(signer=pub, any_round=True),
        ):
            with pytest.raises(RoundUncheckedError, match="sealed round marker says round 2 was begun"):
                read()
        assert w.proof(0, any_round="older")["round"] == 1
        assert len(list(w.results(any_round="older"))) == 11

        # round 2's own blobs, head still gone: not contradicted by the marker -- --any-round is enough
        put_back(world, wid, round2)
        code, out, err = run(capsys, "proof", wid, "--record", "0")
        line = one_line_error(err)
        assert code == UNCHECKED and not out and "round 2 could not be checked as the current one" in line, line
        assert f"'rqp proof {wid} --any-round'" in line, line
        code, out, err = run(capsys, "results", wid)
        assert code == UNCHECKED and not out and f"'rqp results {wid} --any-round'" in one_line_error(err), err
        code, out, err = run(capsys, "proof", wid, "--record", "0", "--any-round")
        assert code == 0 and json.loads(out)["round"] == 2 and "round not checked: no sealed head" in err, err
        assert len(run(capsys, "results", wid, "--any-round")[1].splitlines()) == 11
        # the flag before the workload id reads the same (no optional value swallows the id)
        assert len(run(capsys, "results", "--any-round", wid)[1].splitlines()) == 11
        assert run(capsys, "verify", "--any-round", wid)[0] == 0
        with pytest.raises(RoundUncheckedError, match="round 2 could not be checked"):
            w.proof(0)
        assert w.proof(0, any_round=True)["round"] == 2
        assert len(list(w.results(any_round=True))) == 11
    finally:
        client.close()

    # A9: round 3 begun, round 1 put back, head gone: below the marker's floor -- refused, naming the marker
    world.r.hset(meta, Meta.HEAD, sealed)
    retry_round(world, proc, operator, wid)
    put_back(world, wid, round1)
    world.r.hdel(meta, Meta.HEAD)
    for argv in (["verify", wid], ["proof", wid, "--record", "0"], ["results", wid]):
        code, _, err = run(capsys, *argv)
        line = one_line_error(err)
        assert code == 4 and "summary.enc is round 1 but the sealed round marker (round.enc) says round 3" in line
        assert "sealed head says" not in line, line  # there is none: an operator is not sent to Redis
    world.r.hset(meta, Meta.HEAD, sealed)  # a head older than the marker: still the marker's floor named
    assert "sealed round marker (round.enc) says round 3" in one_line_error(run(capsys, "verify", wid)[2])


def _repack(world, wid: str, records: list[dict], script: str) -> None:
    data = world.root / f"{wid}-next.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in records))
    source = world.root / f"{wid}-next.py"
    source.write_text(script)
    pack(world.store, world.keys, wid, data, source, signer=world.signer.key, replace=True)


def _manifest(out: str) -> str:
    match = re.search(r"manifest ([0-9a-f]{64})", out)
    assert match, out
    return match.group(1)


def test_a3_a_superseded_generations_proof_fails_the_manifest_the_consumer_pins(
    world, proc, cli_env, capsys, operator, tmp_path
):
    """Was (A3): after ``rqp pack --replace`` (rounds start at 1 again) generation 1's proof of
    record 1 -- a value the current workload never produced -- passed ``verify-proof --workload W
    --record 1 --round 1`` and the README check with every pin a consumer could give."""
    pub = _signing(world, operator)
    wid = world.pack("a3", [{"n": i} for i in range(6)])
    world.run_to_end(world.run(wid), proc)
    code, out, _ = run(capsys, "verify", wid)
    assert code == 0
    first = _manifest(out)
    old = tmp_path / "g1.json"
    assert run(capsys, "proof", wid, "--record", "1", "-o", str(old))[0] == 0

    _repack(world, wid, [{"n": i} for i in range(6)], "def process(r):\n    return r['n'] + 1000\n")
    fresh = world.processor("test:2")  # the old one keeps the old script host warm (test_generations)
    try:
        world.run_to_end(world.run(wid), fresh)
    finally:
        fresh.pool.close()
    code, out, _ = run(capsys, "verify", wid)
    current = _manifest(out)
    assert code == 0 and current != first and "round 1 root" in out, out
    new = tmp_path / "g2.json"
    assert run(capsys, "proof", wid, "--record", "1", "-o", str(new))[0] == 0
    assert (
        json.loads(old.read_text())["round"] == json.loads(new.read_text())["round"] == 1
    )  # the round alone cannot tell

    pins = ["--signer", str(pub), "--workload", wid, "--record", "1", "--round", "1", "--manifest", current]
    code, out, err = run(capsys, "verify-proof", str(old), *pins)
    line = one_line_error(err)
    assert code == 4 and not out and f"is over manifest {first}, not {current}" in line, line
    assert "a superseded generation" in line, line
    code, out, err = run(capsys, "verify-proof", str(new), *pins)
    assert code == 0 and f"over manifest {current} as asked" in out, err
    want = Expected(wid, 1, None, 1, current)
    with pytest.raises(IntegrityError, match="another version's proof"):
        check_proof(old.read_bytes(), pub.read_bytes(), want)
    assert check_proof(new.read_bytes(), pub.read_bytes(), want).startswith("sha256:")
    readme = _readme_check()
    assert readme(old.read_bytes(), pub.read_bytes(), wid, 1, 1, current) is False
    assert readme(new.read_bytes(), pub.read_bytes(), wid, 1, 1, current) is True
    assert readme(old.read_bytes(), pub.read_bytes(), wid, 1, 1) is True  # unpinned, as the README says


def test_a8_a_record_refused_at_enqueue_keeps_keys_from_being_claimed_unique(world, proc, cli_env, capsys, operator):
    """Was (A8): uid "k3" on records 3 and 7, record 7 malformed (a name given twice) and refused at
    enqueue with no key recorded: the statement said ``unique_keys: true`` and ``rqp proof --key k3``
    gave record 3 without a word about record 7."""
    _signing(world, operator)
    lines = [json.dumps({"uid": f"k{i}", "n": i}) for i in range(10)]
    lines[7] = '{"n": 7, "n": 8, "uid": "k3"}'
    for wid, text in (("a8", lines), ("a8ok", [json.dumps({"uid": f"k{i}", "n": i}) for i in range(10)])):
        data = world.root / f"{wid}.jsonl"
        data.write_text("\n".join(text) + "\n")
        script = b"def process(r):\n    return {'score': r['n'] * 10}\n"
        pack(world.store, world.keys, wid, data, script, signer=world.signer.key, id_field="uid")
        world.run_to_end(world.run(wid), proc)
    summary = read_summary(world.store, world.backends().workload("a8"))
    assert [f.id for f in summary.failures] == [7] and summary.failures[0].key is None
    assert summary.root is not None and summary.root["statement"]["unique_keys"] is False
    code, out, err = run(capsys, "proof", "a8", "--key", "k3")
    line = one_line_error(err)
    assert code == 7 and not out and "a record refused at enqueue had no key recorded" in line, line
    # every record keyed and unique: by key, as before
    code, out, _ = run(capsys, "proof", "a8ok", "--key", "k3")
    assert code == 0 and json.loads(out)["record"]["id"] == 3 and json.loads(out)["statement"]["unique_keys"] is True


# ---------------------------------------------------------------- the fourth review (atk4)
GENERATION_BLOBS = ("manifest.json", "key.json", *ROUND_BLOBS)


def _generation(world, wid: str) -> dict[str, bytes]:
    return {name: world.store.get(blob_name(wid, name)) for name in GENERATION_BLOBS}


def _run_fresh(world, wid: str) -> None:
    """Run a re-packed generation on a new processor (the old one keeps the old script host warm)."""
    fresh = world.processor("test:2")
    try:
        world.run_to_end(world.run(wid), fresh)
    finally:
        fresh.pool.close()


def test_b1_a_whole_superseded_generation_put_back_under_the_new_ones_head_needs_older(
    world, proc, cli_env, capsys, operator
):
    """Was (B1): generation 1's blobs put back while Redis held generation 2's sealed head:
    ``rqp verify --any-round`` exit 0, printing generation 1's manifest as the one to pin, and the
    message said there was no sealed head in Redis."""
    pub = _signing(world, operator)
    wid = world.pack("b1", [{"n": i} for i in range(6)])
    world.run_to_end(world.run(wid), proc)
    first = _manifest(run(capsys, "verify", wid)[1])
    old = _generation(world, wid)
    _repack(world, wid, [{"n": i} for i in range(6)], "def process(r):\n    return r['n'] + 1000\n")
    _run_fresh(world, wid)
    for name, data in old.items():
        world.store.put(blob_name(wid, name), data)
    for argv in (
        ["verify", wid],
        ["verify", wid, "--any-round"],
        ["proof", wid, "--record", "1", "--any-round"],
        ["results", wid, "--any-round"],
    ):
        code, out, err = run(capsys, *argv)
        line = one_line_error(err)
        assert code == UNCHECKED and not out.strip(), (argv, out, err)  # no manifest offered to pin, no values
        assert "Redis holds a sealed head that does not open under this generation's key" in line, line
        assert "no sealed head in Redis" not in line and f"manifest {first[:16]}..." in line, line
        assert "--any-round=older" in line, line
    code, out, err = run(capsys, "verify", wid, "--any-round=older")
    assert code == 0 and "does not open under this generation's key" in out, (out, err)
    client = _client(world)
    try:
        with pytest.raises(RoundUncheckedError, match="does not open under this generation's key"):
            client.workload(wid).verify(signer=pub, any_round=True)
    finally:
        client.close()


def test_b4_results_never_show_an_older_generation_once_the_current_one_ended(world, proc, cli_env, capsys):
    """Was (B4): the current generation done, its ``summary.enc`` deleted and an older
    generation's blobs put under ``superseded/``: ``rqp results`` printed the older generation's
    values, exit 0, saying the new one "has not finished"."""
    wid = world.pack("b4", [{"n": i} for i in range(6)])
    world.run_to_end(world.run(wid), proc)
    old = _generation(world, wid)
    _repack(world, wid, [{"n": i} for i in range(6)], "def process(r):\n    return r['n'] + 1000\n")
    # re-packed, not started: Redis's head is the previous generation's own -- shown, as before
    code, out, err = run(capsys, "results", wid)
    assert code == 0 and json.loads(out.splitlines()[1])["result"] == 2 and "has not finished" in err, (out, err)
    fresh = world.processor("test:2")
    try:
        r = world.run(wid)
        r.step()  # the new generation running (its own head, open): still the previous one shown
        code, out, err = run(capsys, "results", wid)
        assert code == 0 and json.loads(out.splitlines()[1])["result"] == 2 and "has not finished" in err, err
        world.run_to_end(r, fresh)
    finally:
        fresh.pool.close()
    assert json.loads(run(capsys, "results", wid)[1].splitlines()[1])["result"] == 1001
    world.store.delete(blob_name(wid, SUMMARY_BLOB))
    for name, data in old.items():
        world.store.put(blob_name(wid, "superseded/" + name), data)
    for argv in (["results", wid], ["results", wid, "--failed"], ["results", wid, "--any-round=older"]):
        code, out, err = run(capsys, *argv)
        line = one_line_error(err)
        assert code == 4 and not out, (argv, out, err)
        assert "its current generation" in line and "ended" in line and "summary.enc is missing" in line, line
        assert "has not finished" not in err, err


def test_b2_the_clients_failures_stream_and_verify_streamed_take_the_round_rule(world, proc, operator):
    """Was (B2): with the head deleted and round 1's blobs under the round-2 marker,
    ``failures()``, ``failures_to_pandas()``, ``stream()``'s tail and ``verify_streamed()`` handed
    out / passed round 1 (note ''), where ``rqp results --failed`` exits 11."""
    pub = _signing(world, operator)
    wid = world.pack("b2", [{"n": i} for i in range(12)], FIVE)
    world.run_to_end(world.run(wid), proc)
    round1 = keep_round(world, wid)
    retry_round(world, proc, operator, wid)
    put_back(world, wid, round1)
    world.r.hdel(Ledger(world.r, wid).k.meta, Meta.HEAD)
    client = _client(world)
    try:
        w = client.workload(wid)
        kept = [{**r, "leaf": r.leaf.to_dict()} for r in w.stream(timeout=30, any_round="older")]
        assert len(kept) == 11
        for read in (
            w.failures,
            w.failures_to_pandas,
            lambda: list(w.stream(timeout=30)),
            lambda: list(w.stream(timeout=30, any_round=True)),
            lambda: w.verify_streamed(kept, signer=pub),
            lambda: w.verify_streamed(kept, signer=pub, any_round=True),
        ):
            with pytest.raises(RoundUncheckedError, match="sealed round marker says round 2 was begun"):
                read()
        with pytest.raises(RoundUncheckedError, match=r"client: failures\(any_round=\"older\"\)"):
            w.failures()
        assert [f.id for f in w.failures(any_round="older")] == [5]
        report = w.verify_streamed(kept, signer=pub, any_round="older")
        assert report.round == 1 and "round not checked" in report.note, report.note
    finally:
        client.close()


def test_b6_wait_returns_an_ended_workload_whose_round_no_head_confirms(world, proc):
    """Was (B6): the head deleted after the end, ``wait()`` waited for a verification that could
    not come and timed out saying the workload "had not ended in time" (forever without a timeout)."""
    wid = world.pack("b6", [{"n": i} for i in range(6)])
    world.run_to_end(world.run(wid), proc)
    world.r.hdel(Ledger(world.r, wid).k.meta, Meta.HEAD)
    client = _client(world)
    try:
        s = client.workload(wid).wait(timeout=20, progress=False)
    finally:
        client.close()
    assert s.state == "done" and s.done == 6 and s.verified is False, s
    assert "round not checked" in s.round_note and "no sealed head" in s.round_note, s.round_note


def _work_one(world, proc) -> None:
    """Run only the first queued chunk, as one worker would."""
    from rq import Queue

    from rqp.jobs import JSONSerializer, RqpJob

    job = world.queued_jobs()[0]
    Queue(world.settings.rq_queue, connection=world.r, job_class=RqpJob, serializer=JSONSerializer).remove(job.id)
    proc.run(job.id, *job.args)


@pytest.mark.parametrize("n", [12, 40])
def test_b8_a_cancelled_keyed_workload_does_not_claim_keys_unique(world, proc, cli_env, capsys, operator, n):
    """Was (B8): uid "u1" on records 1 and the last, cancelled before the last ran: the statement
    said ``unique_keys: true`` and ``rqp proof --key u1`` gave record 1 without a word about the
    other. ``n`` 12: every record read, the last never run (a not-run leaf, its key unknown); 40:
    the last never read at all (no leaf)."""
    _signing(world, operator)
    wid = f"b8-{n}"
    rows = [{"uid": f"u{i}", "n": i} for i in range(n)]
    rows[-1]["uid"] = "u1"
    data = world.root / f"{wid}.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in rows))
    pack(world.store, world.keys, wid, data, b"def process(r):\n    return r['n']\n", signer=world.signer.key,
         id_field="uid")  # fmt: skip
    r = world.run(wid)
    r.step()
    _work_one(world, proc)
    control.cancel(world.r, operator.key, wid, "ops@test")
    world.run_to_end(r, proc)
    summary = read_summary(world.store, world.backends().workload(wid))
    assert summary.final_state == "cancelled" and summary.total == n and summary.done == 4, summary
    assert summary.root is not None
    assert (summary.root["statement"]["size"] == n) is (n == 12), summary.root["statement"]  # read, or not
    assert summary.root["statement"]["unique_keys"] is False
    code, out, err = run(capsys, "proof", wid, "--key", "u1")
    line = one_line_error(err)
    assert code == 7 and not out and "a record never ran (cancelled)" in line, line
    assert json.loads(run(capsys, "proof", wid, "--record", "1")[1])["record"]["key"] == "u1"


def test_b3_every_checker_refuses_non_int_numbers_another_key_and_an_empty_pin(
    world, proc, cli_env, capsys, operator, tmp_path
):
    """Was (B3): the README check took ``"round":1.0``, ``"round":true``, ``"index":true`` and an
    edited ``signature.signer``, treated ``manifest=""`` as no pin and raised TypeError for
    ``"index":1.0``; all three checkers took a proof whose ``public_key`` was swapped for another
    key; ``check_proof`` given a parsed dict skipped the number rule without a word."""
    import warnings

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from rqp.pem import fingerprint
    from rqp.proof_check import ParsedProofWarning

    pub = _signing(world, operator)
    wid = world.pack("b3", [{"n": i} for i in range(6)])
    world.run_to_end(world.run(wid), proc)
    manifest = _manifest(run(capsys, "verify", wid)[1])
    good = tmp_path / "p.json"
    assert run(capsys, "proof", wid, "--record", "1", "-o", str(good))[0] == 0
    text = good.read_text()
    pem = pub.read_bytes()
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    other_pem = other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    doc = json.loads(text)
    signer = doc["signature"]["signer"]
    assert f'"workload":"{wid}","round":1,' in text and '"index":1,' in text and text.count(signer) == 1
    swapped = json.dumps({**doc, "public_key": other_pem}, separators=(",", ":"))
    edits = {
        "round 1.0": text.replace(f'"workload":"{wid}","round":1,', f'"workload":"{wid}","round":1.0,'),
        "round true": text.replace(f'"workload":"{wid}","round":1,', f'"workload":"{wid}","round":true,'),
        "index true": text.replace('"index":1,', '"index":true,'),
        "index 1.0": text.replace('"index":1,', '"index":1.0,'),
        "signer": text.replace(signer, fingerprint(other)),
        "public_key": swapped,
    }
    readme = _readme_check()
    assert readme(text.encode(), pem, wid, 1, 1, manifest) is True
    assert readme(text.encode(), pem, wid, 1, 1, "") is False  # "" pins "", never "no pin"
    for what, edited in edits.items():
        assert readme(edited.encode(), pem, wid, 1) is False, what  # False, never an exception
        with pytest.raises(IntegrityError):
            check_proof(edited.encode(), pem, Expected(wid, 1))
        f = tmp_path / "edited.json"
        f.write_text(edited)
        code, out, err = run(capsys, "verify-proof", str(f), "--signer", str(pub), "--workload", wid, "--record", "1")
        assert code == 4 and not out, (what, out, err)
    code, _, err = run(capsys, "verify-proof", str(good), "--signer", str(pub), "--manifest", "")
    assert code == 4, err
    with pytest.raises(IntegrityError, match=r"carries the public key .* not the trusted key"):
        check_proof(swapped.encode(), pem)
    # a parsed dict: checked, but said that the number rule could not apply; an issued proof is not
    with pytest.warns(ParsedProofWarning, match="pass the file's bytes"):
        assert check_proof(json.loads(text), pem).startswith("sha256:")
    client = _client(world)
    try:
        issued = client.workload(wid).proof(1)
    finally:
        client.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_proof(issued, pem) == signer


def test_na_a_proof_issued_while_a_retry_round_runs_says_that_round_will_supersede_it(
    world, proc, cli_env, capsys, operator
):
    """Was (atk4 N-a): during a running retry round, ``rqp proof`` and ``rqp verify`` issued the
    round before it with no word that the running round would supersede it within seconds."""
    _signing(world, operator)
    wid = world.pack("na", [{"n": i} for i in range(12)], FIVE)
    world.run_to_end(world.run(wid), proc)
    assert not run(capsys, "proof", wid, "--record", "0")[2]  # round 1, current: nothing said
    control.retry_failed(world.r, world.store, world.backends().workload(wid), operator.key, "ops@test")
    r = world.run(wid)
    r.step()  # round 2 begun, not ended
    code, out, err = run(capsys, "proof", wid, "--record", "0")
    assert code == 0 and json.loads(out)["round"] == 1, err
    assert "round 2 is running: it will supersede this round when it ends" in err, err
    code, out, _ = run(capsys, "verify", wid)
    assert code == 0 and "round 2 is running" in out, out
    world.run_to_end(r, proc)
    code, out, err = run(capsys, "proof", wid, "--record", "0")
    assert code == 0 and json.loads(out)["round"] == 2 and not err, err


def test_a_failed_retry_round_is_not_said_to_be_running(world, proc, cli_env, capsys, operator):
    """Was (seventh review): after a retry round failed, ``rqp verify`` and ``rqp proof`` said the
    failed round "is running: it will supersede this round when it ends" -- it never will."""
    _signing(world, operator)
    wid = world.pack("nf", [{"n": i} for i in range(12)], FIVE)
    world.run_to_end(world.run(wid), proc)
    control.retry_failed(world.r, world.store, world.backends().workload(wid), operator.key, "ops@test")
    r = world.run(wid)
    r.step()  # round 2 begun
    r.finisher.fail("the retry round failed here", generic="the retry round failed")
    code, out, err = run(capsys, "proof", wid, "--record", "0")
    assert code == 0 and json.loads(out)["round"] == 1, err
    assert "round 2 failed: this round stays the current one until a retry round ends" in err, err
    code, out, _ = run(capsys, "verify", wid)
    assert code == 0 and "round 2 failed" in out and "is running" not in out, out


# ---------------------------------------------------------------- the fifth review (atk5)
def _start(world, wid: str, name: str) -> Any:
    """A re-packed generation started on a new processor (the old one keeps the old script host
    warm) and left running: its sealed head open. The processor, to close."""
    fresh = world.processor(name)
    world.run(wid).step()
    return fresh


def _under_superseded(world, wid: str, blobs: dict[str, bytes]) -> None:
    for name, data in blobs.items():
        world.store.put(blob_name(wid, "superseded/" + name), data)


def test_c3_while_a_generation_runs_results_show_only_the_generation_it_replaced(world, proc, cli_env, capsys):
    """Was (atk5 C3): generation 3 running, generation 1's blobs put under ``superseded/`` (two
    generations back): ``rqp results`` printed generation 1's values, exit 0, as "the previous
    generation". Now generation 3's signed manifest records the generation it replaced (its
    manifest digest and summary bytes): anything else there is refused with one line, exit 4."""
    wid = world.pack("c3", [{"n": i} for i in range(6)])
    world.run_to_end(world.run(wid), proc)
    first = _generation(world, wid)
    _repack(world, wid, [{"n": i} for i in range(6)], "def process(r):\n    return r['n'] + 1000\n")
    _run_fresh(world, wid)
    _repack(world, wid, [{"n": i} for i in range(6)], "def process(r):\n    return r['n'] + 2000\n")
    assert world.backends().workload(wid).manifest.supersedes is not None
    fresh = _start(world, wid, "test:3")
    try:
        code, out, err = run(capsys, "results", wid)  # generation 2, the one replaced: shown
        assert code == 0 and json.loads(out.splitlines()[1])["result"] == 1001 and "has not finished" in err, err
        _under_superseded(world, wid, first)
        for argv in (["results", wid], ["results", wid, "--failed"], ["results", wid, "--any-round=older"]):
            code, out, err = run(capsys, *argv)
            line = one_line_error(err)
            assert code == 4 and not out, (argv, out, err)  # generation 1's values never printed
            assert "other than the one its current generation's signed manifest says it replaced" in line, line
        # the record is signed: a blob writer pointing it at generation 1 breaks the manifest's signature
        doc = json.loads(world.store.get(blob_name(wid, "manifest.json")))
        doc["supersedes"]["manifest"] = _digest_of(first)
        world.store.put(blob_name(wid, "manifest.json"), json.dumps(doc).encode())
        code, out, err = run(capsys, "results", wid)
        assert code == 4 and not out and "changed after signing" in one_line_error(err), (out, err)
    finally:
        fresh.pool.close()


def _digest_of(blobs: dict[str, bytes]) -> str:
    from rqp.workload import Manifest

    return Manifest.from_json(blobs["manifest.json"], json.loads(blobs["manifest.json"])["workload"]).content_digest()


def test_c3_while_a_generation_runs_results_show_the_replaced_generation_only_at_its_last_round(
    world, proc, cli_env, capsys, operator
):
    """Was (atk5 C3, round variant): generation 1 ended at round 2 (``rqp retry --failed``),
    generation 2 running, generation 1's round-1 blobs put under ``superseded/``: ``rqp results``
    showed round 1, exit 0, no note. Now the summary bytes the new manifest signs name round 2."""
    _signing(world, operator)
    wid = world.pack("c3r", [{"n": i} for i in range(8)], FIVE)
    world.run_to_end(world.run(wid), proc)
    round_one = keep_round(world, wid)
    retry_round(world, proc, operator, wid)
    _repack(world, wid, [{"n": i} for i in range(8)], "def process(r):\n    return r['n']\n")
    fresh = _start(world, wid, "test:2")
    try:
        code, out, err = run(capsys, "results", wid, "--failed")  # round 2 of generation 1: shown
        assert code == 0 and len(out.splitlines()) == 1 and "has not finished" in err, (out, err)
        _under_superseded(world, wid, round_one)
        for argv in (["results", wid], ["results", wid, "--failed"], ["results", wid, "--any-round=older"]):
            code, out, err = run(capsys, *argv)
            line = one_line_error(err)
            assert code == 4 and not out, (argv, out, err)
            assert "superseded/summary.enc is not the summary the current generation's signed manifest" in line, line
    finally:
        fresh.pool.close()


def test_c3_a_generation_packed_without_the_record_shows_the_previous_one_only_as_round_unchecked(
    world, proc, cli_env, capsys
):
    """A generation whose manifest does not record what it replaced (packed by an rqp before it
    did; made here by superseding first, then packing without --replace): while it runs, which
    older generation sits in ``superseded/`` cannot be told, so the round rule answers -- exit 11
    unless --any-round, which prints it with the note."""
    from rqp.workload import supersede

    wid = world.pack("c3u", [{"n": i} for i in range(6)])
    world.run_to_end(world.run(wid), proc)
    assert supersede(world.store, wid)
    data, source = world.root / "c3u-next.jsonl", world.root / "c3u-next.py"
    data.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(6)))
    source.write_text("def process(r):\n    return r['n'] + 1000\n")
    pack(world.store, world.keys, wid, data, source, signer=world.signer.key)
    assert world.backends().workload(wid).manifest.supersedes is None
    fresh = _start(world, wid, "test:2")
    try:
        code, out, err = run(capsys, "results", wid)
        assert code == UNCHECKED and not out and "does not record which generation it replaced" in err, (out, err)
        code, out, err = run(capsys, "results", wid, "--any-round")
        assert code == 0 and json.loads(out.splitlines()[1])["result"] == 2, (out, err)
        assert "round not checked: the current generation's signed manifest does not record" in err, err
    finally:
        fresh.pool.close()


def test_c4_a_whole_older_generation_put_back_needs_older_even_with_the_pin_deleted(
    world, proc, cli_env, capsys, operator
):
    """Was (atk5 C4): as B1, but with the start pin deleted from Redis too: plain ``--any-round``
    passed again, ``rqp verify`` printed generation 1's manifest as the one to pin and said "no
    sealed head in Redis" while Redis held one. Now a head that does not open under this
    generation's key is another generation's, whatever the pin says."""
    _signing(world, operator)
    wid = world.pack("c4", [{"n": i} for i in range(6)])
    world.run_to_end(world.run(wid), proc)
    first = _manifest(run(capsys, "verify", wid)[1])
    old = _generation(world, wid)
    _repack(world, wid, [{"n": i} for i in range(6)], "def process(r):\n    return r['n'] + 1000\n")
    _run_fresh(world, wid)
    for name, data in old.items():
        world.store.put(blob_name(wid, name), data)
    assert world.r.hdel(Ledger(world.r, wid).k.meta, Meta.PIN) == 1
    for argv in (["verify", wid, "--any-round"], ["proof", wid, "--record", "1", "--any-round"], ["results", wid, "--any-round"]):  # fmt: skip
        code, out, err = run(capsys, *argv)
        line = one_line_error(err)
        assert code == UNCHECKED and not out.strip(), (argv, out, err)  # no manifest to pin, no values
        assert "Redis holds a sealed head that does not open under this generation's key" in line, line
        assert "no sealed head in Redis" not in line and f"manifest {first[:16]}..." in line, line
    code, out, err = run(capsys, "verify", wid, "--any-round=older")
    assert code == 0 and "does not open under this generation's key" in out, (out, err)  # taken only on purpose
