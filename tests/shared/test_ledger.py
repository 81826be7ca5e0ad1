"""The ledger in process against a real Redis: each script, and the races that make every
record count exactly once (commit against reclaim, a double commit, a commit after the lease
was lost)."""

from __future__ import annotations

import time
from importlib import resources

import pytest

from rqp.ledger import (
    INF,
    SUBMISSIONS,
    ChunkKind,
    ChunkOutcome,
    JobId,
    Ledger,
    LockHeld,
    Meta,
    PartRef,
    RetryEntry,
    State,
    chunk_name,
    held_key,
    job_id,
    join_runs,
    note_field,
    pack_values,
    parse_job_id,
    release_worker,
)
from rqp.outcome import Decision, decide, may_retry
from rqp.sandbox import CRASHED, MALFORMED, NO_SCRIPT, NOT_JSON, OK, RAISED, TIMED_OUT

WORKER = "host-a:111"


@pytest.fixture
def ledger(r) -> Ledger:
    led = Ledger(r, "w1")
    led.begin(now=time.time(), fmt="jsonl", scheduler="s:1", max_attempts=3, pin=b"pin", signer="sha256:x")
    return led


CHUNK = "c00000000"


def _enqueue(led: Ledger, n: int = 10, chunk: str = CHUNK) -> str:
    """n records and one job over them, as the scheduler's enqueue writes them."""
    jid = job_id(led.id, chunk, 0)
    pipe = led.r.pipeline(transaction=True)
    led.put_chunk(pipe, chunk, pack_values([(i, b"sealed-%d" % i) for i in range(n)]))
    led.add_jobs(pipe, {jid: b"sealed-spec"})
    led.advance(pipe, n, 1, total=n)
    pipe.execute()
    return jid


def _outcome(
    jid: str, done: list[int], failed: list[int] = (), retries: list[RetryEntry] = (), drop: list[int] = ()
) -> ChunkOutcome:
    not_done = [*failed, *(e.rid for e in retries)]
    statuses = [(rid, b"st-%d" % rid) for rid in not_done]
    chunk = JobId.parse(jid).chunk
    return ChunkOutcome(
        jid, chunk, PartRef("workloads/w1/parts/c-0.part", 0, 9), 0.5, time.time(), 10,
        statuses=pack_values(statuses), done=list(done), failed=list(failed), retries=list(retries),
        keep=pack_values([(rid, b"sealed-%d" % rid) for rid in not_done]) if chunk.startswith("c") else b"",
        drop=list(drop), note_field=note_field(chunk, 0, 9), note=b"sealed-note",
        messages=[("m1", b"rqp-status\nbody")],
    )  # fmt: skip


def test_each_lua_file_documents_its_keys_and_arguments():
    lua = resources.files("rqp.ledger").joinpath("lua")
    for name in ("start", "commit", "reclaim", "renew_lock"):
        head = [ln for ln in lua.joinpath(f"{name}.lua").read_text().splitlines() if ln.startswith("--")]
        text = "\n".join(head)
        assert "KEYS[1]" in text and "ARGV[1]" in text and "returns" in text, name


def test_codecs_round_trip_and_refuse_what_rqp_did_not_make():
    assert job_id("my-w_1", "c00000042", 3) == "rqp-my-w_1-c00000042-3"
    assert parse_job_id("rqp-my-w_1-c00000042-3") == ("my-w_1", "c00000042", 3)
    assert JobId.parse("rqp-w-r00000001-0").next() == JobId("w", "r00000001", 1)
    for bad in ("rq-w-c00000001-0", "rqp-w-x00000001-0", "rqp-w-c00000001-z", "nonsense"):
        with pytest.raises(ValueError):
            JobId.parse(bad)
    assert chunk_name(ChunkKind.RETRY, 7) == "r00000007" and ChunkKind.of("c00000001") is ChunkKind.DATA
    assert RetryEntry.parse(b"17:2") == RetryEntry(17, 2) and RetryEntry(17, 2).member == "17:2"
    ref = PartRef("workloads/w/parts/c|odd-0.part", 5, 9)
    assert PartRef.parse(ref.encode()) == ref  # a '|' in the name is kept


@pytest.mark.parametrize(
    "kind, attempt, expected",
    [
        (OK, 1, Decision.DONE),
        (RAISED, 1, Decision.RETRY),
        (RAISED, 3, Decision.FAIL),
        (CRASHED, 2, Decision.RETRY),
        (TIMED_OUT, 1, Decision.FAIL),
        (MALFORMED, 1, Decision.FAIL),
        (NOT_JSON, 1, Decision.FAIL),
        (NO_SCRIPT, 1, Decision.FAIL),
        (-1, 1, Decision.FAIL),
    ],
)
def test_one_retry_rule(kind, attempt, expected):
    assert decide(kind, attempt, 3) is expected
    assert may_retry(2, 3) and not may_retry(3, 3)


def test_start_leases_and_fetches_the_chunks_records(ledger, r):
    jid = _enqueue(ledger)
    deadline = time.time() + 30
    lease = ledger.start(jid, CHUNK, deadline=deadline, rids=[3, 4, 5], start_note=b"note", worker=WORKER)
    assert lease.own and lease.records[3] == b"sealed-3" and len(lease.records) == 10
    assert ledger.lease(jid) == pytest.approx(deadline) and r.get(held_key(WORKER)) == jid.encode()
    assert ledger.start_note(jid) == b"note"
    assert ledger.snapshot()["processing"] == 3
    ledger.start(jid, CHUNK, deadline=deadline + 5, rids=[3, 4, 5], start_note=b"again", worker=WORKER)
    assert ledger.snapshot()["processing"] == 3  # counted once per job
    assert (
        ledger.start("rqp-w1-c00000009-0", "c00000009", deadline=deadline, rids=[1], start_note=b"", worker=WORKER)
        is None
    )


def test_a_retry_chunk_reads_its_kept_records(ledger, r):
    r.hset(ledger.k.rec, mapping={"3": b"sealed-3", "5": b"sealed-5"})
    jid = job_id("w1", "r00000001", 0)
    pipe = r.pipeline()
    ledger.add_jobs(pipe, {jid: b"spec"})
    pipe.execute()
    lease = ledger.start(jid, "r00000001", deadline=time.time() + 30, rids=[3, 4, 5], start_note=b"n", worker=WORKER)
    assert not lease.own and lease.records == {3: b"sealed-3", 5: b"sealed-5"}  # 4 deleted behind rqp's back
    assert ledger.commit(_outcome(jid, done=[3, 5], drop=[3, 5]), WORKER)
    assert r.hlen(ledger.k.rec) == 0


def test_done_runs_set_whole_bytes_and_edges():
    assert join_runs([0, 1, 2, 5, 7, 8, 9]) == "0-2,5-5,7-9" and join_runs([]) == ""


@pytest.mark.parametrize("first, last", [(0, 7), (3, 20), (5, 6), (8, 8191), (13, 13)])
def test_commit_sets_exactly_the_done_bits(r, first, last):
    led = Ledger(r, "bits")
    led.begin(now=time.time(), fmt="jsonl", scheduler="s", max_attempts=1, pin=b"p", signer="x")
    r.setbit(led.k.done, first - 1 if first else 8200, 0)
    jid = _enqueue(led, n=0)
    led.start(jid, CHUNK, deadline=time.time() + 30, rids=[], start_note=b"", worker=WORKER)
    out = ChunkOutcome(jid, CHUNK, PartRef(""), 0.0, time.time(), 0, done=list(range(first, last + 1)))
    assert led.commit(out, WORKER)
    bits = led.done_bits(list(range(max(0, first - 9), last + 10)))
    assert [i for i, b in zip(range(max(0, first - 9), last + 10), bits, strict=True) if b] == list(
        range(first, last + 1)
    )


def test_commit_writes_the_whole_outcome_at_once(ledger, r):
    jid = _enqueue(ledger)
    ledger.start(jid, CHUNK, deadline=time.time() + 30, rids=list(range(10)), start_note=b"n", worker=WORKER)
    out = _outcome(jid, done=list(range(7)), failed=[7], retries=[RetryEntry(8, 2, 123.5), RetryEntry(9, 2, 124.0)])
    assert ledger.commit(out, WORKER) is True
    assert ledger.done_bits(list(range(10))) == [True] * 7 + [False] * 3
    assert ledger.failed_ids() == [7]
    assert not r.exists(ledger.k.chunk(CHUNK))  # the chunk's records are gone with it...
    assert sorted(r.hkeys(ledger.k.rec)) == [b"7", b"8", b"9"]  # ...but for those not done
    assert ledger.statuses([0, 7, 9]) == [None, b"st-7", b"st-9"]  # a done record has no status of its own
    assert ledger.notes_for(3) == [(CHUNK, b"sealed-note")] and ledger.notes_for(30) == []
    assert [(e.rid, e.attempt) for e in ledger.due_retries(200.0, 10)] == [(8, 2), (9, 2)]
    assert ledger.parts() == {"c00000000": out.part}
    assert ledger.perf() == (10, 0.5)
    assert ledger.lease(jid) is None and ledger.spec(jid) is None and r.get(held_key(WORKER)) is None
    assert ledger.snapshot()["processing"] == 0 and ledger.start_note(jid) is None
    assert r.hget("rqp:outbox", "m1") == b"rqp-status\nbody"


def test_a_second_commit_of_the_same_job_changes_nothing(ledger, r):
    jid = _enqueue(ledger)
    ledger.start(jid, CHUNK, deadline=time.time() + 30, rids=list(range(10)), start_note=b"n", worker=WORKER)
    assert ledger.commit(_outcome(jid, done=list(range(10))), WORKER)
    before = (ledger.perf(), r.bitcount(ledger.k.done), r.hlen(ledger.k.st))
    assert ledger.commit(_outcome(jid, done=list(range(10))), WORKER) is False
    assert (ledger.perf(), r.bitcount(ledger.k.done), r.hlen(ledger.k.st)) == before


def test_reclaim_before_commit_wins_and_the_late_commit_is_refused(ledger, r):
    jid = _enqueue(ledger)
    ledger.start(
        jid, CHUNK, deadline=time.time() - 1, rids=list(range(10)), start_note=b"n", worker=WORKER
    )  # lease ran out
    assert ledger.expired(time.time()) == [jid]
    assert ledger.reclaim(jid) == b"sealed-spec"
    assert ledger.snapshot()["processing"] == 0 and ledger.spec(jid) is None
    assert ledger.commit(_outcome(jid, done=list(range(10))), WORKER) is False
    assert r.bitcount(ledger.k.done) == 0 and ledger.perf() == (0, 0.0)
    assert ledger.reclaim(jid) is None  # once


def test_commit_before_reclaim_wins(ledger):
    jid = _enqueue(ledger)
    ledger.start(jid, CHUNK, deadline=time.time() + 30, rids=list(range(10)), start_note=b"n", worker=WORKER)
    assert ledger.commit(_outcome(jid, done=list(range(10))), WORKER)
    assert ledger.reclaim(jid) is None


def test_renew_never_recreates_a_lease_and_a_dead_worker_is_released(ledger, r):
    jid = _enqueue(ledger)
    assert ledger.queued() == [jid] and ledger.lease(jid) == INF
    ledger.start(jid, CHUNK, deadline=time.time() + 600, rids=[0], start_note=b"n", worker=WORKER)
    assert release_worker(r, WORKER) == jid
    assert ledger.lease(jid) <= time.time() and r.get(held_key(WORKER)) is None
    assert release_worker(r, WORKER) is None
    ledger.reclaim(jid)
    ledger.renew(jid, time.time() + 30)
    assert ledger.lease(jid) is None


def test_requeue_failed_records(ledger, r):
    jid = _enqueue(ledger)
    ledger.start(jid, CHUNK, deadline=time.time() + 30, rids=list(range(10)), start_note=b"n", worker=WORKER)
    ledger.commit(_outcome(jid, done=list(range(8)), failed=[8, 9]), WORKER)
    ledger.finish(finished_at=time.time(), results_sha256="x", ttl=600, keep_records=True)
    assert ledger.state() == State.DONE and r.ttl(ledger.k.meta) > 0 and r.ttl(ledger.k.notes) > 0
    assert ledger.requeue_failed() == 2
    assert ledger.failed_ids() == [] and ledger.state() == State.RUNNING
    assert [(e.rid, e.attempt) for e in ledger.due_retries(time.time(), 10)] == [(8, 1), (9, 1)]
    assert r.lrange(SUBMISSIONS, 0, -1) == [b"w1"] and r.ttl(ledger.k.meta) == -1
    pipe = r.pipeline()
    ledger.take_retries(pipe, ledger.due_retries(time.time(), 10))
    pipe.execute()
    assert ledger.idle()


def test_the_schedulers_lock(ledger):
    ledger.take_lock("s:1", 30)
    with pytest.raises(LockHeld) as held:
        ledger.take_lock("s:2", 30)
    assert held.value.holder == "s:1"
    ledger.take_lock("s:2", 30, holder_dead=lambda h: h == "s:1")  # a dead holder is replaced at once
    assert ledger.renew_lock("s:2", 30) and not ledger.renew_lock("s:1", 30)
    ledger.release_lock("s:1")  # not its lock: nothing happens
    assert ledger.r.get(ledger.k.lock) == b"s:2"
    ledger.release_lock("s:2")
    assert ledger.r.get(ledger.k.lock) is None
    assert ledger.renew_lock("s:2", 30) and ledger.r.get(ledger.k.lock) == b"s:2"  # a lapsed lock is taken back


def test_begin_pins_and_counts_from_zero(ledger):
    meta = ledger.meta()
    assert meta[Meta.STATE] == "running" and meta[Meta.ENQUEUED] == "0" and ledger.pin() == b"pin"
    assert ledger.cursor() == (0, 0) and ledger.total_and_enqueued() == (None, 0)
