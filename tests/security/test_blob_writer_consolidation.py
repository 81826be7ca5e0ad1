"""A blob-store writer holding the data key (what every processor holds) against what the
consolidation reads before it signs the results root (sixth review): the data read again for
the input digests must match the signed manifest's digest (D5); a first round has no earlier
results to merge (D3); a retry round's earlier results must be the object the ended round's
sealed summary vouches for (D1/D2). Each forgery gets nothing signed, with one line naming it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from rqp.cli import main as rqp_main
from rqp.crypto import aad, encrypt_stream
from rqp.errors import IntegrityError
from rqp.summary import RESULTS_BLOB, SUMMARY_BLOB, Summary, read_summary
from rqp.workload import blob_name
from rqp_scheduler.consolidate import PREVIOUS_BLOB

N = 12
FAILS_ON_FIVE = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"


def _sealed_results(w, results: dict[int, object]) -> bytes:
    lines = [
        json.dumps({"id": i, "result": v}, separators=(",", ":")).encode() + b"\n" for i, v in sorted(results.items())
    ]
    return b"".join(encrypt_stream(w.key, iter(lines), aad("results", w.id)))


def _rewrite_earlier_results(world, w, ended, forged: bytes, **summary_fields) -> None:
    """What a data-key holder with blob-store write does between rounds: the results object
    replaced by ``forged`` (sealed), and the ended summary re-sealed to name its digest (and
    ``summary_fields``)."""
    world.store.put(blob_name(w.id, RESULTS_BLOB), forged)
    ended.results = replace(ended.results, sha256=hashlib.sha256(forged).hexdigest(), size=len(forged))
    for name, value in summary_fields.items():
        setattr(ended, name, value)
    world.store.put(blob_name(w.id, SUMMARY_BLOB), ended.seal(w))


def _round_1_ended(world, proc, operator, name: str):
    """A signed first round of ``N`` records run to its end, record 5 failed: (id, its run)."""
    world.settings = replace(world.settings, window_chunks=100, max_attempts=1, results_key_file=operator.path)
    wid = world.pack(name, [{"n": i} for i in range(N)], FAILS_ON_FIVE)
    run = world.run(wid)
    _until_ended(world, proc, run)
    return wid, run


def _until_ended(world, proc, run) -> None:
    for _ in range(60):
        if run.step():
            return
        world.work(proc)
    raise AssertionError(f"workload {run.id} did not end")


def test_d5_data_read_again_must_match_the_manifest_digest(world, proc):
    world.settings = replace(world.settings, window_chunks=100)
    wid = world.pack("d5", [{"n": i} for i in range(N)])
    run = world.run(wid)
    run.enqueuer.fill_window()
    world.work(proc)
    run.ctx.inputs = None  # as after a restart or in a retry round: the root reads the data again
    w = run.workload
    plain = b"".join(w.data_chunks())
    forged = plain.replace(b'{"n": 1}', b'{"n": 7}', 1)
    assert forged != plain and len(forged) == len(plain)
    sealed = b"".join(encrypt_stream(w.key, iter([forged]), aad("data", wid)))
    assert len(sealed) == w.manifest.data.size  # the same size: only the digest tells
    world.store.put(w.manifest.data.name, sealed)
    with pytest.raises(IntegrityError, match="does not match its manifest digest"):
        run.finisher.finish()
    assert not world.store.exists(blob_name(wid, SUMMARY_BLOB))  # nothing signed


def test_d3_a_first_round_merges_no_planted_earlier_results(world, proc):
    world.settings = replace(world.settings, window_chunks=100)
    wid = world.pack("d3", [{"n": i} for i in range(N)], FAILS_ON_FIVE)
    run = world.run(wid)
    w = run.workload
    # planted before the round ends: record 5 (which fails) "done" with a result of the attacker's
    world.store.put(blob_name(wid, PREVIOUS_BLOB), _sealed_results(w, {5: 999}))
    _until_ended(world, proc, run)
    s = read_summary(world.store, w)
    assert (s.done, s.failed) == (N - 1, 1) and [f.id for f in s.failures] == [5]
    assert not world.store.exists(blob_name(wid, PREVIOUS_BLOB))  # deleted unread


@pytest.mark.parametrize("where", [RESULTS_BLOB], ids=["results-rewritten"])
def test_d1_d2_a_retry_round_carries_only_the_results_the_ended_summary_vouches_for(
    world, proc, cli_env, capsys, operator, where
):
    world.settings = replace(world.settings, window_chunks=100, max_attempts=1)
    wid = world.pack("d12" + where[:3], [{"n": i} for i in range(N)], FAILS_ON_FIVE)
    run = world.run(wid)
    _until_ended(world, proc, run)
    w = run.workload
    assert read_summary(world.store, w).done == N - 1
    # the data-key holder: record 0's result changed, every other result as the fleet made it
    forged = {i: (1000 if i == 0 else i * 2) for i in range(N) if i != 5}
    world.store.put(blob_name(wid, where), _sealed_results(w, forged))
    assert rqp_main(["retry", wid, "--failed"]) == 0
    capsys.readouterr()
    run = world.run(wid)
    with pytest.raises(IntegrityError, match="not the results object its sealed summary vouches for"):
        _until_ended(world, proc, run)
    # nothing signed over the forgery: the ended round's summary is still round 1's
    raw = world.store.get(blob_name(wid, SUMMARY_BLOB))
    assert Summary.from_json(w.open_sealed("summary", "", raw), wid).round == 1


def test_e2_a_first_round_never_reads_earlier_results_put_back_after_its_delete(world, proc, monkeypatch):
    """Seventh review, E2: the delete then a second look-up of the name left a gap a writer who
    kept renaming the forgery back over it could win; a first round now never reads the name."""
    world.settings = replace(world.settings, window_chunks=100)
    wid = world.pack("e2", [{"n": i} for i in range(N)], FAILS_ON_FIVE)
    run = world.run(wid)
    w = run.workload
    name = blob_name(wid, PREVIOUS_BLOB)
    forged = _sealed_results(w, {5: 999})
    world.store.put(name, forged)
    real_delete = world.store.delete

    def delete_then_put_back(blob, *args, **kwargs):
        out = real_delete(blob, *args, **kwargs)
        if blob == name:
            world.store.put(name, forged)  # the racing writer wins the gap every time
        return out

    monkeypatch.setattr(world.store, "delete", delete_then_put_back)
    _until_ended(world, proc, run)
    s = read_summary(world.store, w)
    assert (s.done, s.failed) == (N - 1, 1) and [f.id for f in s.failures] == [5]


def test_e1b_a_summary_resealed_to_name_the_retry_round_switches_no_check_off(world, proc, cli_env, capsys, operator):
    """Seventh review, E1b: a summary re-sealed (data key) to name the retry's own round took a
    branch that skipped the earlier results' check; any round but the one before is refused."""
    world.settings = replace(world.settings, window_chunks=100, max_attempts=1)
    wid = world.pack("e1b", [{"n": i} for i in range(N)], FAILS_ON_FIVE)
    run = world.run(wid)
    _until_ended(world, proc, run)
    w = run.workload
    assert rqp_main(["retry", wid, "--failed"]) == 0
    capsys.readouterr()
    raw = world.store.get(blob_name(wid, SUMMARY_BLOB))
    ended = Summary.from_json(w.open_sealed("summary", "", raw), wid)
    ended.round = 2
    world.store.put(blob_name(wid, SUMMARY_BLOB), ended.seal(w))
    forged = {i: (1000 if i == 0 else i * 2) for i in range(N) if i != 5}
    world.store.put(blob_name(wid, PREVIOUS_BLOB), _sealed_results(w, forged))
    run = world.run(wid)
    with pytest.raises(IntegrityError, match="is round 2, not the round 1 this retry round follows"):
        _until_ended(world, proc, run)


def test_e1_results_and_summary_resealed_between_rounds_fail_the_ended_rounds_signed_root(
    world, proc, cli_env, capsys, operator
):
    """Seventh review, E1: the data key re-seals a summary too, so one naming the rewritten
    results object's digest passed the D1/D2 check; each carried result must be in the ended
    round's root, which only the results key signs."""
    wid, run = _round_1_ended(world, proc, operator, "e1")
    w = run.workload
    ended = read_summary(world.store, w)
    assert ended.root is not None and ended.root.get("signature")  # the scheduler signs roots
    assert rqp_main(["retry", wid, "--failed"]) == 0
    capsys.readouterr()
    forged = _sealed_results(w, {i: (1000 if i == 0 else i * 2) for i in range(N) if i != 5})
    _rewrite_earlier_results(world, w, ended, forged)
    run = world.run(wid)
    with pytest.raises(IntegrityError, match="result for record 0 is not what the ended round's signed root vouches"):
        _until_ended(world, proc, run)
    raw = world.store.get(blob_name(wid, SUMMARY_BLOB))
    assert Summary.from_json(w.open_sealed("summary", "", raw), wid).round == 1  # nothing signed


def test_an_honest_retry_round_carries_its_earlier_results_through_the_signed_root_check(
    world, proc, cli_env, capsys, operator
):
    wid, run = _round_1_ended(world, proc, operator, "e1ok")
    assert rqp_main(["retry", wid, "--failed"]) == 0
    capsys.readouterr()
    run = world.run(wid)
    _until_ended(world, proc, run)
    s = read_summary(world.store, run.workload)
    assert (s.round, s.done, s.failed) == (2, N - 1, 1)
    assert rqp_main(["verify", wid]) == 0


def test_f1_a_summary_resealed_without_its_root_is_refused(world, proc, cli_env, capsys, operator):
    """Eighth review, F1: the signed-root check ran only when the ended summary named a root, and
    the data key re-seals a summary without one (and with the forged object's digest)."""
    wid, run = _round_1_ended(world, proc, operator, "f1")
    w = run.workload
    ended = read_summary(world.store, w)
    assert rqp_main(["retry", wid, "--failed"]) == 0
    capsys.readouterr()
    forged = _sealed_results(w, {i: (1000 if i == 0 else i * 2) for i in range(N) if i != 5})
    _rewrite_earlier_results(world, w, ended, forged, root=None)
    run = world.run(wid)
    with pytest.raises(IntegrityError, match="the ended round's summary names no results root"):
        _until_ended(world, proc, run)


def _claim_in_this_round(world, w, rid: int, result: bytes) -> None:
    """What a processor holding the data key, Redis and the blob store can write (eighth review,
    F0): a sealed note of this round naming a chunk the scheduler never queued, claiming ``rid``
    done, and that chunk's part with a result of its own."""
    from rqp.ledger import Ledger, job_id, note_field
    from rqp.parts import part_blob, seal_part
    from rqp.status import ChunkNote

    chunk = "c00000099"
    jid = job_id(w.id, chunk, 0)
    led = Ledger(world.r, w.id)
    note = ChunkNote(chunk, jid, ((rid, 1, 1),), (), None, None, None, "vm:1", round=2)
    world.r.hset(led.k.notes, note_field(chunk, rid, rid), note.seal(w))
    world.store.put(part_blob(w.id, f"{chunk}-0"), seal_part(w.scope(jid), [(rid, result)]))


def _f0_round_1_ended_and_retried(world, proc, operator, name: str):
    wid, _ = _round_1_ended(world, proc, operator, name)
    assert rqp_main(["retry", wid, "--failed"]) == 0
    run = world.run(wid)
    run.step()  # round 2 begun: record 5 queued again
    return run


def test_f0_a_retry_round_cannot_claim_a_record_the_ended_round_did(world, proc, cli_env, capsys, operator):
    """Eighth review, F0: a retry round's notes could claim any record, so a result the ended
    round's signed root vouches for was "re-run" with a processor's own, and signed again."""
    run = _f0_round_1_ended_and_retried(world, proc, operator, "f0a")
    w = run.workload
    capsys.readouterr()
    _claim_in_this_round(world, w, 1, b'{"n":1,"ok":true,"forged":"rerun"}')
    with pytest.raises(
        IntegrityError, match="record 1 has a result the ended round's signed root vouches for, and a chunk"
    ):
        _until_ended(world, proc, run)
    assert read_summary(world.store, w).round == 1  # nothing signed
    assert rqp_main(["verify", w.id]) == 0  # round 1's results, as they were


def test_f0_dropping_the_carried_result_as_well_is_refused(world, proc, cli_env, capsys, operator):
    """The same with record 1's line taken out of the earlier results (and the summary re-sealed
    to their digest): every leaf of the ended root is accounted for, so a record the root says
    had a result cannot go missing from what is carried."""
    run = _f0_round_1_ended_and_retried(world, proc, operator, "f0b")
    w = run.workload
    capsys.readouterr()
    ended = read_summary(world.store, w)
    forged = _sealed_results(w, {i: i * 2 for i in range(N) if i not in (1, 5)})
    _rewrite_earlier_results(world, w, ended, forged)
    _claim_in_this_round(world, w, 1, b'{"n":1,"ok":true,"forged":"rerun"}')
    with pytest.raises(IntegrityError, match="record 1 is missing from the earlier round's results, but the ended"):
        _until_ended(world, proc, run)
    assert read_summary(world.store, w).round == 1


def test_f0_a_failure_reason_rewritten_in_the_ended_summary_is_refused(world, proc, cli_env, capsys, operator):
    """The check of a record the retry round runs again reads its reason from the ended summary
    (sealed under the data key): a reason changed there no longer matches the signed leaf."""
    run = _f0_round_1_ended_and_retried(world, proc, operator, "f0c")
    w = run.workload
    ended = read_summary(world.store, w)
    assert [f.id for f in ended.failures] == [5]
    ended.failures = [replace(ended.failures[0], error="something else")]
    world.store.put(blob_name(w.id, SUMMARY_BLOB), ended.seal(w))
    with pytest.raises(IntegrityError, match="record 5 is missing from the earlier round's results, but the ended"):
        _until_ended(world, proc, run)


@pytest.mark.parametrize("line", [b'{"id":true,"result":1}', b'{"id":1}', b'{"id": 1,"result":2}', b"x"])
def test_f3_a_carried_line_without_rqps_id_is_one_line(world, proc, cli_env, capsys, operator, line):
    """Eighth review, F3: a line a data-key holder wrote failed the workload with "unexpected
    ValueError"; now one line naming the earlier results, nothing signed."""
    run = _f0_round_1_ended_and_retried(world, proc, operator, "f3")
    w = run.workload
    lines = [b'{"id":0,"result":0}\n', line + b"\n"]
    world.store.put(blob_name(w.id, RESULTS_BLOB), b"".join(encrypt_stream(w.key, iter(lines), aad("results", w.id))))
    with pytest.raises(
        IntegrityError, match=r"a line of the earlier round's results \(.+\) does not start with a record id"
    ):
        _until_ended(world, proc, run)
    assert read_summary(world.store, w).round == 1


@pytest.mark.parametrize("junk", ["forged", "random"])
def test_f2_a_planted_copy_of_the_earlier_results_is_copied_again_from_the_intact_results(
    world, proc, cli_env, capsys, operator, junk
):
    """Eighth review, F2: a ``results.previous.enc`` found at a retry round's start (a racer's
    left by a first round, or planted) failed every retry until someone deleted it by hand. When
    it is not the object the ended summary vouches for and ``results.enc`` is, it is copied
    again from ``results.enc`` -- which the signed-root checks then read -- and the round ends."""
    wid, run = _round_1_ended(world, proc, operator, "f2" + junk[0])
    w = run.workload
    forged = {i: (1000 if i == 0 else i * 2) for i in range(N) if i != 5}
    planted = _sealed_results(w, forged) if junk == "forged" else b"\x00junk" * 50
    world.store.put(blob_name(wid, PREVIOUS_BLOB), planted)
    assert rqp_main(["retry", wid, "--failed"]) == 0
    capsys.readouterr()
    run = world.run(wid)
    _until_ended(world, proc, run)
    s = read_summary(world.store, w)
    assert (s.round, s.done, s.failed) == (2, N - 1, 1)
    assert not world.store.exists(blob_name(wid, PREVIOUS_BLOB))
    assert rqp_main(["results", wid]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {r["id"]: r["result"] for r in rows if "result" in r}[0] == 0  # the fleet's, not the planted 1000
    assert rqp_main(["verify", wid]) == 0


def test_the_earlier_results_deleted_before_a_retry_round_ends_is_named(world, proc, cli_env, capsys, operator):
    """Was (eighth review, N-2): a keyless blob writer who deletes ``results.enc`` after ``rqp
    retry`` got a refusal blaming Redis ("record 1 is neither done nor failed"); the line now
    names the missing results object."""
    wid, run = _round_1_ended(world, proc, operator, "n2")
    assert rqp_main(["retry", wid, "--failed"]) == 0
    world.store.delete(blob_name(wid, RESULTS_BLOB))
    run = world.run(wid)
    with pytest.raises(IntegrityError, match=r"the earlier round's results \(.+results\.enc\) are missing"):
        _until_ended(world, proc, run)
    assert read_summary(world.store, run.workload).round == 1


# ---------------------------------------------------------------- the ninth review (atk9)


def _reseal_head(world, w, **fields) -> None:
    """What a data-key holder with Redis access can do: the head re-sealed with other fields."""
    from rqp.ledger import Head, Ledger, Meta

    led = Ledger(world.r, w.id)
    head = Head.open(w, led.head())
    world.r.hset(led.k.meta, Meta.HEAD, replace(head, **fields).seal(w))


def test_g1_a_retry_round_with_the_earlier_results_deleted_signs_nothing(world, proc, cli_env, capsys, operator):
    """Ninth review, G1: with results.enc (and its copy) deleted, a retry round was consolidated
    from its own notes alone -- a forged note claiming the records round 1 did was signed."""
    run = _f0_round_1_ended_and_retried(world, proc, operator, "g1")
    w = run.workload
    _claim_in_this_round(world, w, 1, b'{"n":1,"ok":true,"forged":"noprev"}')
    world.store.delete(blob_name(w.id, RESULTS_BLOB))
    with pytest.raises(IntegrityError, match=r"results \(.+results\.enc\) are missing"):
        _until_ended(world, proc, run)
    assert read_summary(world.store, w).round == 1


def test_g2_a_head_resealed_with_another_total_signs_nothing(world, proc, cli_env, capsys, operator):
    """Ninth review, G2: a head re-sealed with total + 1 and a note for that record got a record
    the signed data does not hold into a signed root."""
    run = _f0_round_1_ended_and_retried(world, proc, operator, "g2")
    w = run.workload
    _reseal_head(world, w, total=N + 1)
    _claim_in_this_round(world, w, N, b'{"n":12,"ok":true,"forged":"beyond"}')
    with pytest.raises(IntegrityError, match=r"sealed head in Redis says .* \(total 13\), this scheduler sealed"):
        _until_ended(world, proc, run)
    assert read_summary(world.store, w).round == 1


def test_g2_a_root_over_more_or_fewer_records_than_the_data_holds_signs_nothing(world, proc, operator):
    """The root's own check, whatever the head says: the data read again for the input digests
    must hold exactly the head's records (a --format jsonl workload is never padded, nor cut)."""
    from rqp.results_root import build_root
    from rqp_scheduler.consolidate import _payloads

    world.settings = replace(world.settings, window_chunks=100, results_key_file=operator.path)
    wid = world.pack("g2r", [{"n": i} for i in range(N)])
    run = world.run(wid)
    _until_ended(world, proc, run)
    w = run.workload
    results = blob_name(wid, RESULTS_BLOB)
    for total in (N + 1, N - 2):
        with pytest.raises(IntegrityError, match=f"sealed head says {total} records, its signed data holds {N}"):
            build_root(world.store, w, _payloads(w, None), results, [], total, None)
    assert build_root(world.store, w, _payloads(w, None), results, [], N, None).statement["size"] == N


def test_g5_a_head_resealed_as_round_1_during_a_retry_round_signs_nothing(world, proc, cli_env, capsys, operator):
    """Ninth review, G5: the head re-sealed as round 1 while round 2 ran was re-read, and the run
    consolidated as a first round again: a second, different round-1 root was signed."""
    run = _f0_round_1_ended_and_retried(world, proc, operator, "g5")
    w = run.workload
    before = world.store.get(blob_name(w.id, SUMMARY_BLOB))
    _reseal_head(world, w, round=1)
    with pytest.raises(IntegrityError, match="sealed head in Redis says round 1, but this scheduler runs round 2"):
        _until_ended(world, proc, run)
    assert world.store.get(blob_name(w.id, SUMMARY_BLOB)) == before  # nothing signed


@pytest.mark.parametrize("ids", [[-1], [N + 3], [5, 5]])
def test_g6_junk_ids_in_the_ended_summarys_failures_queue_nothing(world, proc, cli_env, capsys, operator, ids):
    """Ninth review, G6: a negative id in the ended summary's failures (re-sealed under the data
    key) reached Redis as "unexpected ResponseError"; an id beyond the data was dropped without a
    word. Now one line naming the summary, nothing queued."""
    from rqp.summary import Failure

    wid, run = _round_1_ended(world, proc, operator, "g6")
    w = run.workload
    ended = read_summary(world.store, w)
    ended.failures = [Failure(i, "junk", 1) for i in ids]
    world.store.put(blob_name(wid, SUMMARY_BLOB), ended.seal(w))
    assert rqp_main(["retry", wid, "--failed"]) == 0
    with pytest.raises(IntegrityError, match=r"summary lists failed records that are not its records"):
        world.run(wid)


def test_g3_a_carried_line_with_an_added_member_is_not_carried(world, proc, cli_env, capsys, operator):
    """Ninth review, G3: a results line rewritten with a member its leaf does not cover (here an
    "error" beside the result) passed 'rqp verify' and was carried into the retry round's root."""
    wid, run = _round_1_ended(world, proc, operator, "g3")
    w = run.workload
    ended = read_summary(world.store, w)
    lines = [
        b'{"id":%d,"result":%d%s}\n' % (i, i * 2, b',"error":"FORGED"' if i == 1 else b"") for i in range(N) if i != 5
    ]
    forged = b"".join(encrypt_stream(w.key, iter(lines), aad("results", w.id)))
    _rewrite_earlier_results(world, w, ended, forged)
    assert rqp_main(["verify", wid]) != 0  # the stored results no longer pass
    assert "has members rqp never writes (error)" in capsys.readouterr().err
    rqp_main(["results", wid])  # (tenth review, H4) nor is the line shown as it was written
    shown = {d["id"]: d for d in map(json.loads, capsys.readouterr().out.splitlines())}
    assert shown[1] == {"id": 1, "error": "results line has members rqp never writes (error)"}, shown[1]
    assert rqp_main(["retry", wid, "--failed"]) == 0
    run = world.run(wid)
    with pytest.raises(IntegrityError, match="has members rqp never writes"):
        _until_ended(world, proc, run)
    assert read_summary(world.store, w).round == 1


# ---------------------------------------------------------------- the tenth review (atk10)


def test_h1_a_fresh_run_of_a_rolled_back_head_signs_no_second_root(world, proc, cli_env, capsys, operator):
    """Tenth review, H1: the lock taken from the run of round 2 (it stops supervising), the head
    re-sealed as round 1 and round 1's note replaced by one of the attacker's: a fresh run took
    round 1 as its own and signed a second, different round-1 root. The root already signed is
    what a data-key holder cannot roll back: nothing is signed over it."""
    from rqp.crypto import decrypt_stream
    from rqp.ledger import Ledger, job_id, note_field
    from rqp.parts import seal_part
    from rqp.status import ChunkNote

    run = _f0_round_1_ended_and_retried(world, proc, operator, "h1")
    w = run.workload
    before = world.store.get(blob_name(w.id, SUMMARY_BLOB))
    run.lock.release()  # the attacker took the lock: this run stops supervising the workload
    plain = b"".join(decrypt_stream(w.key, [world.store.get(blob_name(w.id, RESULTS_BLOB))], aad("results", w.id)))
    rows = [json.loads(x) for x in plain.splitlines()]
    results = [(d["id"], b"999" if d["id"] == 1 else json.dumps(d["result"]).encode()) for d in rows]
    _reseal_head(world, w, round=1, closed=False)
    led = Ledger(world.r, w.id)
    chunk, jid = "c00000000", job_id(w.id, "c00000000", 7)
    world.r.delete(led.k.notes)  # round 1's notes, replaced by one of the attacker's
    note = ChunkNote(chunk, jid, tuple((rid, 1, 1) for rid, _ in results), (), None, None, None, "vm:x", 1, None)
    world.r.hset(led.k.notes, note_field(chunk, 0, N - 1), note.seal(w))
    world.store.put(blob_name(w.id, f"parts/{chunk}-7.part"), seal_part(w.scope(jid), results))
    fresh = world.run(w.id)
    with pytest.raises(IntegrityError, match="a results root of round 1 is already signed"):
        _until_ended(world, proc, fresh)
    assert world.store.get(blob_name(w.id, SUMMARY_BLOB)) == before  # nothing signed


def test_an_honest_consolidation_run_again_signs_the_same_root(world, proc, operator):
    """The crash the rule allows: the summary written, Redis not yet told -- consolidating the
    same round again gives the same root, which is signed again."""
    from rqp_scheduler.consolidate import consolidate

    world.settings = replace(world.settings, window_chunks=100, results_key_file=operator.path, keep_parts=True)
    wid = world.pack("again", [{"n": i} for i in range(N)])
    run = world.run(wid)
    _until_ended(world, proc, run)
    first = read_summary(world.store, run.workload)
    open_head = replace(run.ctx.head, closed=False)
    again = consolidate(
        run.ctx.ledger, world.store, run.workload, open_head, signer=run.finisher.results_signer(), keep_parts=True
    )
    from rqp.results_root import Attestation

    roots = [Attestation.from_dict(x.root, wid).root for x in (first, again)]
    assert roots[0] == roots[1] and again.round == first.round == 1


def test_h2_a_script_workloads_parsed_records_are_counted_too(world, proc, operator):
    """Tenth review, H2: the count check skipped --format script workloads even when the root was
    given the records its parse() yielded; only a root built without parsing them is not counted."""
    from rqp.results_root import NOT_PARSED, build_root

    world.settings = replace(world.settings, window_chunks=100)
    wid = world.pack("h2", [{"n": i} for i in range(N)])
    run = world.run(wid)
    _until_ended(world, proc, run)
    w = run.workload
    results = blob_name(wid, RESULTS_BLOB)
    parsed = [b'{"n":%d}' % i for i in range(N)]
    w.manifest = replace(w.manifest, format="script")  # as a --format script workload's root sees it
    with pytest.raises(IntegrityError, match=f"sealed head says {N + 1} records, its signed data holds {N}"):
        build_root(world.store, w, parsed, results, [], N + 1, None)
    assert build_root(world.store, w, NOT_PARSED, results, [], N + 1, None).statement["size"] == N + 1
