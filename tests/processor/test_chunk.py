"""``ChunkProcessor`` in process against a real Redis and a real script host: a chunk's outcome
committed as one, forged and unpinned jobs refused, a commit that lost its lease discarded."""

from __future__ import annotations

import base64
import time

import pytest

from rqp import sandbox
from rqp.backends import Backends
from rqp.errors import ForbiddenJobError
from rqp.jobs import ChunkSpec, seal_spec
from rqp.ledger import PAIR, job_id, rejections
from rqp.signing import TrustStore
from rqp.status import StatusRecord
from rqp_processor.chunk import ChunkProcessor

SCRIPT = "def process(r):\n    if r['n'] == 2:\n        raise ValueError('two')\n    return r['n'] * 10\n"


@pytest.fixture
def setup(world):
    wid = world.pack("chunky", [{"n": i} for i in range(5)], script=SCRIPT)
    trust = TrustStore.from_file(world.signer.trusted)
    w, led = world.begun(wid)
    jid = job_id(wid, "c00000000", 0)
    spec = ChunkSpec(wid, "c00000000", ((0, 5, 1),), 2, 0.0, 0.0, time.time())
    pipe = world.r.pipeline()
    led.put_chunk(
        pipe, "c00000000", w.scope("c00000000").seal_packed("record", [(i, b'{"n": %d}' % i) for i in range(5)])
    )
    led.add_jobs(pipe, {jid: seal_spec(w, jid, spec)})
    pipe.execute()
    pool = sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(world.settings), warm=False)
    backends = Backends(
        world.settings, redis_client=world.r, blobs=world.store, queue=world.mq(), keys=world.keys, trust=trust
    )
    proc = ChunkProcessor(backends, worker_name="test:1", pool=pool)
    yield world, w, led, jid, proc
    pool.close()


def test_a_chunk_commits_done_retry_and_its_messages(setup):
    world, w, led, jid, proc = setup
    out = proc.run(jid, w.id, base64.b64encode(led.spec(jid)).decode())
    assert out == {"done": 4, "failed": 0, "retrying": 1}
    assert led.done_bits([0, 1, 2, 3, 4]) == [True, True, False, True, True]
    [retry] = led.due_retries(time.time() + 1, 10)
    assert (retry.rid, retry.attempt) == (2, 2)
    st = StatusRecord.open(w, 2, led.status(2))
    assert st.state == "queued" and st.error == "process() raised ValueError: two (line 3)"
    assert led.status(0) is None  # a done record's status is its chunk's note
    from rqp.status import record_status

    done = record_status(world.r, w, 0)
    assert (done.state, done.attempts, done.job, done.worker) == ("done", 1, jid, "test:1")
    assert world.r.hkeys(led.k.rec) == [b"2"] and not world.r.exists(led.k.chunk("c00000000"))
    part = led.parts()["c00000000"]
    assert (part.first, part.last) == (0, 4) and world.store.exists(part.name)
    assert world.r.xlen("rqp:mq:rqp-status") >= 1  # published


def test_a_forged_spec_is_rejected_and_recorded(setup):
    world, w, led, jid, proc = setup
    with pytest.raises(ForbiddenJobError, match="was not created by rqp's scheduler"):
        proc.run(jid, w.id, base64.b64encode(b"\0" * 64).decode())
    assert rejections(world.r)[0]["job"] == jid
    assert led.done_bits([0]) == [False]


def test_a_workload_without_its_start_pin_is_refused(setup):
    world, w, led, jid, proc = setup
    world.r.hdel(led.k.meta, "pin")
    with pytest.raises(ForbiddenJobError, match="has no start pin"):
        proc.run(jid, w.id, base64.b64encode(led.spec(jid)).decode())
    assert "has no start pin" in led.processor_error()


def test_a_commit_after_the_lease_was_lost_is_discarded(setup, monkeypatch):
    world, w, led, jid, proc = setup
    real = proc._outcomes

    def slow(*args):
        outcomes = real(*args)
        assert led.reclaim(jid) is not None  # meanwhile the scheduler re-ran the chunk elsewhere
        return outcomes

    monkeypatch.setattr(proc, "_outcomes", slow)
    assert proc.run(jid, w.id, base64.b64encode(led.spec(jid)).decode()) == {"discarded": True}
    assert led.done_bits([0, 1]) == [False, False] and led.parts() == {}
    assert list(world.store.list(f"workloads/{w.id}/parts/")) == []  # its part was deleted


def test_a_tampered_record_fails_alone_and_the_others_results_land_under_their_own_ids(world):
    """The records are opened in one loop (AES-GCM with the AAD built inline) and an all-OK frame
    of results is sealed in bulk: a record sealed for another id fails with open_sealed's reason,
    and every other result lands in the part under its own record id -- the bulk path maps a
    frame's indices back to ids when the records sent are not the chunk's all."""
    from rqp.parts import iter_results

    wid = world.pack("bulk", [{"n": i} for i in range(6)], script="def process(r):\n    return r['n'] * 10\n")
    trust = TrustStore.from_file(world.signer.trusted)
    w, led = world.begun(wid)
    jid = job_id(wid, "c00000000", 0)
    spec = ChunkSpec(wid, "c00000000", ((0, 6, 1),), 2, 0.0, 0.0, time.time())
    seals = w.scope("c00000000")
    forged = seals.seal("record", 9, b'{"n": 2}')  # sealed for id 9, filed under 2: must not open
    packed = b"".join(
        seals.seal_packed("record", [(i, b'{"n": %d}' % i)]) if i != 2 else PAIR.pack(2, len(forged)) + forged
        for i in range(6)
    )
    pipe = world.r.pipeline()
    led.put_chunk(pipe, "c00000000", packed)
    led.add_jobs(pipe, {jid: seal_spec(w, jid, spec)})
    pipe.execute()
    pool = sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(world.settings), warm=False)
    backends = Backends(
        world.settings, redis_client=world.r, blobs=world.store, queue=world.mq(), keys=world.keys, trust=trust
    )
    proc = ChunkProcessor(backends, worker_name="test:1", pool=pool)
    try:
        out = proc.run(jid, wid, base64.b64encode(led.spec(jid)).decode())
    finally:
        pool.close()
    assert out == {"done": 5, "failed": 1, "retrying": 0}
    assert led.done_bits(list(range(6))) == [True, True, False, True, True, True]
    st = StatusRecord.open(w, 2, led.status(2))
    assert st.state == "failed" and "failed authentication" in st.error
    part = led.part_of("c00000000")
    assert part is not None
    got = dict(iter_results(world.store.iter_chunks(part.name), part.name, w.scope(jid)))
    assert got == {0: b"0", 1: b"10", 3: b"30", 4: b"40", 5: b"50"}
