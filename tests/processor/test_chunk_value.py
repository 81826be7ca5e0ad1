"""``ChunkProcessor`` reading a data chunk's records as one sealed value (``rqp.chunk_records``),
against a real Redis and a real script host: the usual chunk runs every record under its own id;
a value swapped in from another chunk fails each record with one line naming the refusal and
writes no result; a spec re-run for fewer records than were sealed runs exactly those."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rqp import sandbox
from rqp.backends import Backends
from rqp.chunk_records import seal_records
from rqp.jobs import ChunkSpec, seal_spec
from rqp.ledger import Head, Ledger, job_id
from rqp.parts import iter_results
from rqp.signing import TrustStore
from rqp.status import StatusRecord
from rqp.workload import Workload
from rqp_processor.chunk import ChunkProcessor

SCRIPT = "def process(r):\n    return r['n'] * 10\n"
N = 6


@pytest.fixture
def lab(world: Any) -> Iterator[tuple[Any, Workload, Ledger, ChunkProcessor]]:
    wid = world.pack("onevalue", [{"n": i} for i in range(N)], script=SCRIPT)
    trust = TrustStore.from_file(world.signer.trusted)
    w = Workload.open(world.store, world.keys, wid, trust)
    led = Ledger(world.r, wid)
    led.begin(
        now=time.time(), fmt="jsonl", scheduler="t:1", max_attempts=1, pin=w.seal_pin(), signer=w.signer,
        head=Head().seal(w),
    )  # fmt: skip
    pool = sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(world.settings), warm=False)
    backends = Backends(
        world.settings, redis_client=world.r, blobs=world.store, queue=world.mq(), keys=world.keys, trust=trust
    )
    yield world, w, led, ChunkProcessor(backends, worker_name="test:1", pool=pool)
    pool.close()


def _queue(
    world: Any, w: Workload, led: Ledger, chunk: str, runs: tuple[tuple[int, int, int], ...], value: bytes
) -> str:
    jid = job_id(w.id, chunk, 0)
    pipe = world.r.pipeline()
    led.put_chunk(pipe, chunk, value)
    led.add_jobs(pipe, {jid: seal_spec(w, jid, ChunkSpec(w.id, chunk, runs, 1, 0.0, 0.0, time.time()))})
    pipe.execute()
    return jid


def _value(w: Workload, chunk: str, ids: range) -> bytes:
    return seal_records(w.scope(chunk), ids, [b'{"n": %d}' % i for i in ids])


def _results(world: Any, w: Workload, led: Ledger, chunk: str, jid: str) -> dict[int, bytes]:
    part = led.part_of(chunk)
    assert part is not None
    return dict(iter_results(world.store.iter_chunks(part.name), part.name, w.scope(jid)))


def test_a_chunk_value_runs_every_record_under_its_own_id(lab):
    world, w, led, proc = lab
    jid = _queue(world, w, led, "c00000000", ((0, N, 1),), _value(w, "c00000000", range(N)))
    assert proc.run(jid, w.id, base64.b64encode(led.spec(jid)).decode()) == {"done": N, "failed": 0, "retrying": 0}
    assert _results(world, w, led, "c00000000", jid) == {i: b"%d" % (i * 10) for i in range(N)}


def test_a_value_swapped_in_from_another_chunk_fails_each_record_with_one_line(lab):
    world, w, led, proc = lab
    # chunk 1 holds records 0..2, chunk 0 records 3..5: a Redis writer swaps the two values
    jid = _queue(world, w, led, "c00000000", ((3, 3, 1),), _value(w, "c00000001", range(0, 3)))
    assert proc.run(jid, w.id, base64.b64encode(led.spec(jid)).decode()) == {"done": 0, "failed": 3, "retrying": 0}
    for rid in (3, 4, 5):
        st = StatusRecord.open(w, rid, led.status(rid))
        assert st.state == "failed" and "sealed records of chunk c00000000" in st.error, st.error
        assert "failed authentication" in st.error and "\n" not in st.error
    assert led.done_bits([3, 4, 5]) == [False, False, False]


def test_a_re_run_of_fewer_records_takes_those_by_id(lab):
    world, w, led, proc = lab
    jid = _queue(world, w, led, "c00000000", ((2, 2, 1),), _value(w, "c00000000", range(N)))
    assert proc.run(jid, w.id, base64.b64encode(led.spec(jid)).decode()) == {"done": 2, "failed": 0, "retrying": 0}
    assert _results(world, w, led, "c00000000", jid) == {2: b"20", 3: b"30"}


def test_a_record_left_for_its_retry_is_kept_sealed_under_the_data_key(world):
    """A record of a one-value chunk that fails and may retry is kept in ``rec`` as the retry
    chunks read it: sealed on its own under the data key, bound to its id."""
    script = "def process(r):\n    if r['n'] == 2:\n        raise ValueError('two')\n    return r['n']\n"
    wid = world.pack("kept", [{"n": i} for i in range(4)], script=script)
    trust = TrustStore.from_file(world.signer.trusted)
    w, led = world.begun(wid)
    jid = job_id(wid, "c00000000", 0)
    pipe = world.r.pipeline()
    led.put_chunk(pipe, "c00000000", _value(w, "c00000000", range(4)))
    led.add_jobs(pipe, {jid: seal_spec(w, jid, ChunkSpec(wid, "c00000000", ((0, 4, 1),), 2, 0.0, 0.0, time.time()))})
    pipe.execute()
    pool = sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(world.settings), warm=False)
    backends = Backends(
        world.settings, redis_client=world.r, blobs=world.store, queue=world.mq(), keys=world.keys, trust=trust
    )
    try:
        out = ChunkProcessor(backends, worker_name="test:1", pool=pool).run(
            jid, wid, base64.b64encode(led.spec(jid)).decode()
        )
    finally:
        pool.close()
    assert out == {"done": 3, "failed": 0, "retrying": 1}
    kept = world.r.hget(led.k.rec, "2")
    assert w.open_sealed("record", 2, kept) == b'{"n": 2}'
    assert not world.r.exists(led.k.chunk("c00000000"))  # the chunk's one value went with its commit
