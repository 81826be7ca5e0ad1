"""An attacker who can read and write Redis, but holds no key: each move of the review that found
Security II's problems, against a real Redis, with the scheduler's and the processors' own code
running the workload in process (a real script host). What must hold: a workload is never
finished short or with forged counts, a replayed job changes nothing and publishes nothing, an
old ciphertext put back is noticed, Redis cannot name the work to do.

(The network attacker and the one holding a role's Redis credentials: ``test_redis_acl.py``.)
"""

from __future__ import annotations

import json

import pytest

from rqp.crypto import aad, decrypt_stream
from rqp.errors import IntegrityError
from rqp.ledger import INF, OUTBOX, Head, Ledger, Meta, State, WorkloadKeys, job_id, rejections
from rqp.parts import part_blob
from rqp.status import record_status
from rqp.summary import read_summary
from rqp.workload import blob_name
from rqp_scheduler.consolidate import StateError

#: record 5 always fails (after 2 attempts), every other one succeeds
SCRIPT = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"
N = 40


def _results(world, wid: str) -> list[dict]:
    w = world.run(wid).workload
    raw = b"".join(
        decrypt_stream(w.key, world.store.iter_chunks(blob_name(wid, "results.enc")), aad("results", wid), "results")
    )
    return [json.loads(line) for line in raw.splitlines()]


def _status_messages(world) -> int:
    return len(world.mq().peek(world.settings.status_queue, 10_000))


def _until(world, run, proc, ready, steps: int = 200) -> None:
    """Work and step until ``ready()`` -- checked before each step, so an attack can land after
    the last chunk and before the step that would finish the workload."""
    for _ in range(steps):
        world.work(proc)
        if ready():
            return
        assert not run.step(), "the workload finished before the attack"
    raise AssertionError("never ready")


def _all_settled(run, led: Ledger, failed: int = 1):
    """Every record enqueued and done or failed: the next step finishes the workload."""
    return lambda: run.exhausted and led.idle() and led.r.bitcount(led.k.failed) == failed


@pytest.fixture
def proc(world):
    p = world.processor()
    yield p
    p.pool.close()


# ---------------------------------------------------------------------- forged progress
def test_plain_counts_zeroed_before_the_first_chunk_change_nothing(world, proc):
    """The review's `HSET meta state running enqueued 0 chunks 0 total 0` made a workload "done"
    with nothing in it. The plain counts are for display; the sealed head is what counts."""
    wid = world.pack("zeroed", [{"n": i} for i in range(N)], script=SCRIPT)
    run = world.run(wid)
    led = Ledger(world.r, wid)
    world.r.hset(led.k.meta, mapping={"state": "running", "enqueued": 0, "chunks": 0, "total": 0})
    world.run_to_end(run, proc)
    s = read_summary(world.store, run.workload)
    assert (s.total, s.done, s.failed) == (N, N - 1, 1)
    assert [r["id"] for r in _results(world, wid)] == [i for i in range(N) if i != 5]


def test_plain_counts_edited_mid_run_change_nothing(world, proc):
    """The review's mid-run EVAL (total = enqueued, chunks + 1) finished 400 records as "176 done,
    4 failed of 180"."""
    wid = world.pack("midrun", [{"n": i} for i in range(N)], script=SCRIPT)
    run = world.run(wid)
    run.step()
    world.work(proc)
    run.step()
    world.r.eval(
        "local e = redis.call('HGET', KEYS[1], 'enqueued'); redis.call('HSET', KEYS[1], 'total', e);"
        " redis.call('HINCRBY', KEYS[1], 'chunks', 1)",
        1,
        WorkloadKeys(wid).meta,
    )
    world.run_to_end(run, proc)
    s = read_summary(world.store, run.workload)
    assert (s.total, s.done, s.failed, s.chunks) == (N, N - 1, 1, N // 4)


def test_a_scheduler_never_started_refuses_planted_state(world):
    """State planted before any scheduler ran has no start pin: refused, not resumed."""
    wid = world.pack("planted", [{"n": i} for i in range(8)])
    world.r.hset(WorkloadKeys(wid).meta, mapping={"state": "running", "enqueued": 0, "chunks": 0, "total": 0})
    with pytest.raises(IntegrityError, match=f"workload {wid} has no start pin in Redis"):
        world.run(wid)


def test_a_head_that_does_not_open_fails_the_workload(world, proc):
    other = world.pack("other", [{"n": 1}])
    world.run(other)
    wid = world.pack("swapped", [{"n": i} for i in range(N)])
    run = world.run(wid)
    run.step()
    world.work(proc)
    # another workload's sealed head, in the right place
    world.r.hset(WorkloadKeys(wid).meta, Meta.HEAD, world.r.hget(WorkloadKeys(other).meta, Meta.HEAD))
    with pytest.raises(StateError) as err:
        for _ in range(50):
            run.step()
            world.work(proc)
    assert str(err.value).startswith(
        f"Redis state of {wid} failed authentication: the enqueue's sealed head is missing or does not open"
    )
    meta = Ledger(world.r, wid).meta()
    assert meta[Meta.STATE] == State.FAILED and meta[Meta.ERROR].startswith(
        f"Redis state of {wid} failed authentication"
    )
    assert not world.store.exists(blob_name(wid, "summary.enc"))


def test_a_head_put_back_counts_every_record_once(world, proc):
    """An older sealed head put back (or a Redis restart that lost writes) sends the enqueue back;
    the chunks Redis has already are not queued twice, and the summary adds up."""
    wid = world.pack("rollback", [{"n": i} for i in range(N)], script=SCRIPT)
    run = world.run(wid)
    led = Ledger(world.r, wid)
    old = led.head()
    for _ in range(3):
        run.step()
        world.work(proc)
    assert Head.open(run.workload, led.head()).enqueued > 12
    world.r.hset(led.k.meta, Meta.HEAD, old)
    world.run_to_end(run, proc)
    s = read_summary(world.store, run.workload)
    assert (s.total, s.done, s.failed) == (N, N - 1, 1)
    ids = [r["id"] for r in _results(world, wid)]
    assert ids == sorted(set(ids)) and len(ids) == N - 1


# ---------------------------------------------------------------------- replayed jobs
def test_a_job_replayed_after_the_workload_finished_changes_nothing(world, proc):
    """The review captured a queued job and put it back after the run (`ZADD pending +inf`):
    record 0 went from done to failed and new status messages went out."""
    wid = world.pack("replay", [{"n": i} for i in range(8)])
    run = world.run(wid)
    run.step()
    jid = job_id(wid, "c00000000", 0)
    k = WorkloadKeys(wid)
    captured = world.r.hgetall(f"rq:job:{jid}")
    spec = world.r.hget(k.spec, jid)
    assert captured and spec
    world.run_to_end(run, proc)
    messages, done = _status_messages(world), world.r.bitcount(k.done)
    # everything a Redis writer can put back: the RQ job, its place in the queue, pending, its spec
    world.r.hset(f"rq:job:{jid}", mapping=captured)
    world.r.rpush(f"rq:queue:{world.settings.rq_queue}", jid)
    world.r.zadd(k.pending, {jid: INF})
    world.r.hset(k.spec, jid, spec)
    world.r.hset(k.meta, Meta.STATE, State.RUNNING)
    assert world.work(proc) == 1
    assert world.refused[-1] == (
        jid,
        f"job {jid}: chunk c00000000 of workload {wid} has committed already (a replayed job); rejected before any user code ran",
    )
    assert rejections(world.r)[0]["job"] == jid
    assert record_status(world.r, run.workload, 0).state == "done"
    assert world.r.bitcount(k.done) == done and world.r.bitcount(k.failed) == 0
    assert _status_messages(world) == messages and world.r.hlen(OUTBOX) == 0  # nothing published


def test_a_job_of_an_earlier_generation_is_refused(world, proc):
    """A chunk re-run after its worker died is generation 1; generation 0 put back is stale."""
    wid = world.pack("stale", [{"n": i} for i in range(4)])
    run = world.run(wid)
    run.step()
    led = Ledger(world.r, wid)
    [jid] = led.queued()
    captured = world.r.hgetall(f"rq:job:{jid}")
    sealed = led.spec(jid)
    assert led.start(
        jid, "c00000000", deadline=0.0, runs=((0, 4, 1),), sealed_spec=sealed, start_note=b"", worker="gone:1"
    )
    run._reclaim_expired()  # generation 1 queued
    world.r.hset(f"rq:job:{jid}", mapping=captured)
    world.r.zadd(led.k.pending, {jid: INF})
    world.r.hset(led.k.spec, jid, sealed)  # even with its spec: generation 1's records are queued again
    world.r.lpush(f"rq:queue:{world.settings.rq_queue}", jid)
    world.run_to_end(run, proc)
    s = read_summary(world.store, run.workload)
    assert (s.total, s.done, s.failed) == (4, 4, 0)
    assert [r["id"] for r in _results(world, wid)] == [0, 1, 2, 3]


# ---------------------------------------------------------------------- rollback
def test_an_earlier_status_put_back_over_the_final_one_is_noticed(world, proc):
    """The review put record 192's attempt-1 status back over its final one: `rqp status` showed
    "queued, attempts 1"."""
    wid = world.pack("status-back", [{"n": i} for i in range(8)], script=SCRIPT)
    run = world.run(wid)
    led = Ledger(world.r, wid)
    run.step()
    world.work(proc)
    first = led.status(5)
    assert json.loads(run.workload.open_sealed("status", 5, first))["state"] == "queued"
    world.run_to_end(run, proc)
    assert record_status(world.r, run.workload, 5).state == "failed"
    world.r.hset(led.k.st, "5", first)
    with pytest.raises(
        IntegrityError, match=r"record 5 is marked failed but its status record says 'queued' \(attempt 1\)"
    ):
        record_status(world.r, run.workload, 5)


def test_a_status_put_back_before_the_summary_fails_the_workload(world, proc):
    wid = world.pack("status-back-2", [{"n": i} for i in range(8)], script=SCRIPT)
    run = world.run(wid)
    led = Ledger(world.r, wid)
    run.step()
    world.work(proc)
    first = led.status(5)
    _until(world, run, proc, _all_settled(run, led))
    world.r.hset(led.k.st, "5", first)
    with pytest.raises(
        StateError,
        match=f"Redis state of {wid} failed authentication: record 5 has no result and its status record says 'queued'",
    ):
        run.step()
    assert led.state() == State.FAILED and not world.store.exists(blob_name(wid, "summary.enc"))


def test_a_forged_retry_entry_is_dropped_not_run(world, proc):
    """The retry zset used to let Redis name any (record, attempt) pair for the scheduler to seal."""
    wid = world.pack("retry-forged", [{"n": i} for i in range(8)], script=SCRIPT)
    run = world.run(wid)
    led = Ledger(world.r, wid)
    run.step()
    world.work(proc)  # record 5 failed once: its retry is due now (no backoff here)
    world.r.zadd(led.k.retry, {"1:2": 0, "6:1": 0, "5:3": 0, "999:1": 0})  # done, done, wrong attempt, no such record
    run.step()
    assert world.r.zcard(led.k.retry) == 0
    forged = {e["job"] for e in rejections(world.r)}
    assert forged == {"retry 1:2", "retry 6:1", "retry 5:3", "retry 999:1"}
    assert "was not asked for by a sealed commit" in rejections(world.r)[0]["reason"]
    specs = [run.workload.open_sealed("job", jid, sealed) for jid, sealed in led.specs()]
    assert [json.loads(s)["r"] for s in specs] == [[[5, 1, 2]]]  # the one retry a commit asked for
    world.run_to_end(run, proc)
    s = read_summary(world.store, run.workload)
    assert (s.total, s.done, s.failed) == (8, 7, 1) and s.failures[0].attempts == 2


def test_a_result_part_of_an_earlier_attempt_does_not_count(world, proc, monkeypatch):
    """Result parts were bound to (workload, record) only: an earlier attempt's was accepted."""
    wid = world.pack("old-part", [{"n": i} for i in range(4)])
    run = world.run(wid)
    run.step()
    gen0 = job_id(wid, "c00000000", 0)
    kept: dict[str, bytes] = {}
    real_outcomes, real_delete = proc._outcomes, proc.store.delete

    def slow(*args):
        out = real_outcomes(*args)
        run._reclaim(gen0, "the test's scheduler re-ran it")  # the lease is lost meanwhile
        return out

    def keep_a_copy(name):
        kept[name] = world.store.get(name)
        real_delete(name)

    monkeypatch.setattr(proc, "_outcomes", slow)
    monkeypatch.setattr(proc.store, "delete", keep_a_copy)
    world.work(proc)  # generation 0: its commit is refused, its part deleted (and copied by the attacker)
    monkeypatch.setattr(proc, "_outcomes", real_outcomes)
    led = Ledger(world.r, wid)
    _until(world, run, proc, _all_settled(run, led, 0))
    [old] = kept  # the chunk's part, named with its token: generation 0's
    assert old.startswith(part_blob(wid, "c00000000-0-")[: -len(".part")]), old
    [gen1] = [n for n in world.store.list(part_blob(wid, "")[: -len(".part")]) if "/c00000000-1-" in n]
    world.store.put(gen1, kept[old])  # generation 1's part (its name: in the note the attacker opens)
    with pytest.raises(
        StateError, match=f"the result of record 0 in chunk c00000000's part is not job rqp-{wid}-c00000000-1's"
    ):
        run.step()


def test_a_note_deleted_before_the_summary_fails_the_workload(world, proc):
    wid = world.pack("no-note", [{"n": i} for i in range(N)], script=SCRIPT)
    run = world.run(wid)
    led = Ledger(world.r, wid)
    _until(world, run, proc, _all_settled(run, led))
    field = next(f for f in world.r.hkeys(led.k.notes) if f.startswith(b"c00000002|"))
    world.r.hdel(led.k.notes, field)
    with pytest.raises(StateError, match="record 8 is neither done nor failed"):
        run.step()
    assert led.meta()[Meta.ERROR].startswith(f"Redis state of {wid} failed authentication: record 8 is neither done")


def test_a_note_copied_to_claim_records_twice_fails_the_workload(world, proc):
    wid = world.pack("two-notes", [{"n": i} for i in range(N)])
    run = world.run(wid)
    led = Ledger(world.r, wid)
    _until(world, run, proc, _all_settled(run, led, 0))
    field = next(f for f in world.r.hkeys(led.k.notes) if f.startswith(b"c00000001|"))
    world.r.hset(led.k.notes, b"c00000001|99|99", world.r.hget(led.k.notes, field))
    with pytest.raises(StateError, match="record 4 is claimed done by two chunks"):
        run.step()
