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
    Head,
    JobId,
    JobRefused,
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
    led.begin(now=time.time(), fmt="jsonl", scheduler="s:1", max_attempts=3, pin=b"pin", signer="sha256:x", head="h0")
    return led


CHUNK = "c00000000"


def _enqueue(led: Ledger, n: int = 10, chunk: str = CHUNK) -> str:
    """n records and one job over them, as the scheduler's enqueue writes them."""
    jid = job_id(led.id, chunk, 0)
    pipe = led.r.pipeline(transaction=True)
    led.put_chunk(pipe, chunk, pack_values([(i, b"sealed-%d" % i) for i in range(n)]))
    led.add_jobs(pipe, {jid: SPEC})
    led.advance(pipe, Head(n, 1, n), "sealed-head")
    pipe.execute()
    return jid


SPEC = b"sealed-spec"


def _runs(rids: list[int], attempt: int = 1) -> tuple[tuple[int, int, int], ...]:
    return tuple((rid, 1, attempt) for rid in rids)


def _start(
    led: Ledger, jid: str, rids: list[int], deadline: float | None = None, note: bytes = b"n", spec: bytes = SPEC
):
    deadline = time.time() + 30 if deadline is None else deadline
    return led.start(
        jid,
        JobId.parse(jid).chunk,
        deadline=deadline,
        runs=_runs(rids),
        sealed_spec=spec,
        start_note=note,
        worker=WORKER,
    )


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
    lease = _start(ledger, jid, [3, 4, 5], deadline, b"note")
    assert lease.own and lease.records[3] == b"sealed-3" and len(lease.records) == 10
    assert ledger.lease(jid) == pytest.approx(deadline) and r.get(held_key(WORKER)) == jid.encode()
    assert ledger.start_note(jid) == b"note"
    assert ledger.snapshot()["processing"] == 3
    _start(ledger, jid, [3, 4, 5], deadline + 5, b"again")
    assert ledger.snapshot()["processing"] == 3  # counted once per job
    assert _start(ledger, "rqp-w1-c00000009-0", [1], deadline) is None


def test_a_retry_chunk_reads_its_kept_records(ledger, r):
    r.hset(ledger.k.rec, mapping={"3": b"sealed-3", "5": b"sealed-5"})
    jid = job_id("w1", "r00000001", 0)
    pipe = r.pipeline()
    ledger.add_jobs(pipe, {jid: SPEC})
    pipe.execute()
    lease = _start(ledger, jid, [3, 4, 5])
    assert not lease.own and lease.records == {3: b"sealed-3", 5: b"sealed-5"}  # 4 deleted behind rqp's back
    assert ledger.commit(_outcome(jid, done=[3, 5], drop=[3, 5]), WORKER)
    assert r.hlen(ledger.k.rec) == 0


def test_done_runs_set_whole_bytes_and_edges():
    assert join_runs([0, 1, 2, 5, 7, 8, 9]) == "0-2,5-5,7-9" and join_runs([]) == ""


@pytest.mark.parametrize("first, last", [(0, 7), (3, 20), (5, 6), (8, 8191), (13, 13)])
def test_commit_sets_exactly_the_done_bits(r, first, last):
    led = Ledger(r, "bits")
    led.begin(now=time.time(), fmt="jsonl", scheduler="s", max_attempts=1, pin=b"p", signer="x", head="h0")
    r.setbit(led.k.done, first - 1 if first else 8200, 0)
    jid = _enqueue(led, n=0)
    _start(led, jid, [])
    out = ChunkOutcome(jid, CHUNK, PartRef(""), 0.0, time.time(), 0, done=list(range(first, last + 1)))
    assert led.commit(out, WORKER)
    bits = led.done_bits(list(range(max(0, first - 9), last + 10)))
    assert [i for i, b in zip(range(max(0, first - 9), last + 10), bits, strict=True) if b] == list(
        range(first, last + 1)
    )


def test_commit_writes_the_whole_outcome_at_once(ledger, r):
    jid = _enqueue(ledger)
    _start(ledger, jid, list(range(10)))
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
    _start(ledger, jid, list(range(10)))
    assert ledger.commit(_outcome(jid, done=list(range(10))), WORKER)
    before = (ledger.perf(), r.bitcount(ledger.k.done), r.hlen(ledger.k.st))
    assert ledger.commit(_outcome(jid, done=list(range(10))), WORKER) is False
    assert (ledger.perf(), r.bitcount(ledger.k.done), r.hlen(ledger.k.st)) == before


def _ledger(r, wid: str) -> Ledger:
    led = Ledger(r, wid)
    led.begin(now=time.time(), fmt="jsonl", scheduler="s:1", max_attempts=3, pin=b"pin", signer="sha256:x", head="h0")
    return led


@pytest.mark.parametrize(
    ("cpu", "before", "after"),
    [
        (0.25, {}, (10, 0.5, 10, 0.25)),  # measured: the CPU and its records are added
        (None, {}, (10, 0.5, 0, 0.0)),  # not measured (in-process host, /proc unreadable): neither
        (0.125, {"cpu": 3.0, "cpu_records": 30}, (10, 0.5, 40, 3.125)),  # added to what was there
        # junk a Redis writer put there: the commit goes through and restarts both fields
        (0.125, {"cpu": b"\x85junk", "cpu_records": "7"}, (10, 0.5, 10, 0.125)),
        (0.125, {"cpu": "1.5", "cpu_records": "x"}, (10, 0.5, 10, 0.125)),
    ],
)
def test_a_commit_adds_the_script_cpu_when_measured_and_junk_never_fails_it(r, cpu, before, after):
    """The script hosts' CPU sizes chunks (issue 28 item 4): a commit adds it and its records to
    perf; a chunk not measured adds to neither; junk in either field never fails the commit."""
    ledger = _ledger(r, "w-cpu")
    if before:
        r.hset(ledger.k.perf, mapping=before)
    jid = _enqueue(ledger)
    _start(ledger, jid, list(range(10)))
    out = _outcome(jid, done=list(range(10)))
    out.cpu = cpu
    assert ledger.commit(out, WORKER) is True
    assert ledger.sizing_perf() == after
    assert ledger.perf() == (10, 0.5) and r.bitcount(ledger.k.done) == 10


@pytest.mark.parametrize("junk", [b"\x85junk", b"nan", b"-inf", b"-1", b"1e400", b""])
def test_junk_in_the_perf_fields_reads_as_unmeasured(r, junk):
    """What the scheduler sizes chunks by never raises on a Redis writer's junk (trust table)."""
    ledger = _ledger(r, "w-junk")
    r.hset(ledger.k.perf, mapping={"records": junk, "seconds": junk, "cpu": junk, "cpu_records": junk})
    assert ledger.sizing_perf() == (0, 0.0, 0, 0.0)


def test_reclaim_before_commit_wins_and_the_late_commit_is_refused(ledger, r):
    jid = _enqueue(ledger)
    _start(ledger, jid, list(range(10)), time.time() - 1)  # lease ran out
    assert ledger.expired(time.time()) == [jid]
    assert ledger.reclaim(jid) == b"sealed-spec"
    assert ledger.snapshot()["processing"] == 0 and ledger.spec(jid) is None
    assert ledger.commit(_outcome(jid, done=list(range(10))), WORKER) is False
    assert r.bitcount(ledger.k.done) == 0 and ledger.perf() == (0, 0.0)
    assert ledger.reclaim(jid) is None  # once


def test_commit_before_reclaim_wins(ledger):
    jid = _enqueue(ledger)
    _start(ledger, jid, list(range(10)))
    assert ledger.commit(_outcome(jid, done=list(range(10))), WORKER)
    assert ledger.reclaim(jid) is None


def test_renew_never_recreates_a_lease_and_a_dead_worker_is_released(ledger, r):
    jid = _enqueue(ledger)
    assert ledger.queued() == [jid] and ledger.lease(jid) == INF
    _start(ledger, jid, [0], time.time() + 600)
    assert release_worker(r, WORKER) == jid
    assert ledger.lease(jid) <= time.time() and r.get(held_key(WORKER)) is None
    assert release_worker(r, WORKER) is None
    ledger.reclaim(jid)
    ledger.renew(jid, time.time() + 30)
    assert ledger.lease(jid) is None


def test_requeue_failed_records(ledger, r):
    jid = _enqueue(ledger)
    _start(ledger, jid, list(range(10)))
    ledger.commit(_outcome(jid, done=list(range(8)), failed=[8, 9]), WORKER)
    assert ledger.requeue_failed() == 0  # not while it runs
    ledger.finish(finished_at=time.time(), results_sha256="x", ttl=600, keep_records=True, sealed_head="closed")
    assert ledger.state() == State.DONE and r.ttl(ledger.k.meta) > 0 and r.ttl(ledger.k.notes) > 0
    assert ledger.head() == b"closed" and r.ttl(ledger.k.parts) > 0  # parts stay: their chunks committed
    assert ledger.requeue_failed() == 2
    # which records run again is the scheduler's to say, from the sealed summary (a new round)
    assert ledger.failed_ids() == [8, 9] and ledger.state() == State.RUNNING
    assert r.lrange(SUBMISSIONS, 0, -1) == [b"w1"] and r.ttl(ledger.k.meta) == -1
    pipe = r.pipeline()
    ledger.new_round(pipe, "round-2", [(8, b"q8"), (9, b"q9")], 5.0)
    pipe.execute()
    assert ledger.failed_ids() == [] and ledger.statuses([8, 9]) == [b"q8", b"q9"] and ledger.head() == b"round-2"
    assert [(e.rid, e.attempt) for e in ledger.due_retries(time.time(), 10)] == [(8, 1), (9, 1)]
    pipe = r.pipeline()
    ledger.take_retries(pipe, ledger.due_retries(time.time(), 10))
    pipe.execute()
    assert ledger.idle()


def test_the_schedulers_lock(ledger):
    t1 = ledger.take_lock("s:1", 30)
    assert t1 == "1 s:1" and ledger.r.get(ledger.k.fence) == b"1 s:1"
    with pytest.raises(LockHeld) as held:
        ledger.take_lock("s:2", 30)
    assert held.value.holder == "s:1"
    t2 = ledger.take_lock("s:2", 30, holder_dead=lambda h: h == "s:1")  # a dead holder is replaced at once
    assert t2 == "2 s:2"
    assert ledger.renew_lock("s:2", 30, t2) and not ledger.renew_lock("s:1", 30, t1)
    ledger.release_lock("s:1", t1)  # not its lock: nothing happens
    assert ledger.r.get(ledger.k.lock) == b"s:2"
    ledger.release_lock("s:2", t2)
    assert ledger.r.get(ledger.k.lock) is None and ledger.r.get(ledger.k.fence) == b"2 s:2"  # the fence stays
    assert ledger.renew_lock("s:2", 30, t2) and ledger.r.get(ledger.k.lock) == b"s:2"  # a lapsed lock is taken back
    ledger.r.delete(ledger.k.lock)
    assert ledger.take_lock("s:3", 30) == "3 s:3"  # lapsed: taken, a generation on
    assert not ledger.renew_lock("s:2", 30, t2)  # ...and s:2 does not take it back


def test_begin_pins_and_counts_from_zero(ledger):
    meta = ledger.meta()
    assert meta[Meta.STATE] == "running" and meta[Meta.ENQUEUED] == "0" and ledger.pin() == b"pin"
    assert ledger.head() == b"h0"


def test_advance_writes_the_sealed_head_with_the_plain_counts(ledger):
    pipe = ledger.r.pipeline()
    ledger.advance(pipe, Head(40, 3, None), "h1")
    pipe.execute()
    meta = ledger.meta()
    assert (meta[Meta.ENQUEUED], meta[Meta.CHUNKS], meta.get(Meta.TOTAL), ledger.head()) == ("40", "3", None, b"h1")


# ---------------------------------------------------------------------- replayed jobs (START's refusals)
def test_start_refuses_a_job_whose_spec_is_not_the_one_queued(ledger, r):
    jid = _enqueue(ledger)
    with pytest.raises(JobRefused) as refused:
        _start(ledger, jid, [0], spec=b"an-older-sealed-spec")
    assert refused.value.why == "stale"
    assert ledger.lease(jid) == INF and ledger.snapshot()["processing"] == 0  # nothing written
    r.hdel(ledger.k.spec, jid)  # reclaimed, or the workload finished: no spec at all
    with pytest.raises(JobRefused, match="stale"):
        _start(ledger, jid, [0])


def test_start_refuses_a_job_of_a_committed_chunk(ledger, r):
    jid = _enqueue(ledger)
    _start(ledger, jid, list(range(10)))
    assert ledger.commit(_outcome(jid, done=list(range(10))), WORKER)
    # the attacker puts the captured job back: pending and its spec
    r.zadd(ledger.k.pending, {jid: INF})
    r.hset(ledger.k.spec, jid, SPEC)
    with pytest.raises(JobRefused, match="committed"):
        _start(ledger, jid, list(range(10)))
    assert ledger.reclaim(jid) is None  # and the scheduler never re-runs it
    assert ledger.commit(_outcome(jid, done=list(range(10))), WORKER) is False


def test_start_refuses_a_job_naming_finished_records(ledger, r):
    jid = job_id("w1", "r00000003", 0)
    pipe = r.pipeline()
    ledger.add_jobs(pipe, {jid: SPEC})
    pipe.execute()
    for key in (ledger.k.done, ledger.k.failed):
        r.setbit(key, 700, 1)
        with pytest.raises(JobRefused, match="finished"):
            ledger.start(
                jid, "r00000003", deadline=time.time() + 30, runs=((5, 1, 2), (690, 20, 2)), sealed_spec=SPEC,
                start_note=b"n", worker=WORKER,
            )  # fmt: skip
        r.setbit(key, 700, 0)
    assert _start(ledger, jid, [5]) is not None
