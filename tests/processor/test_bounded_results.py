"""Bounded results (issue 23, item 4), in process against a real Redis and real script hosts:
``RQP_MAX_RESULT_BYTES`` fails an oversized result alone, for good, with its reason; a chunk's
results stream into their part (sealed on arrival, spilled as ciphertext past the part's memory
budget) so the worker's memory does not grow with the chunk; the part keeps its byte format."""

from __future__ import annotations

import base64
import dataclasses
import os
import time
import tracemalloc

import pytest

from rqp import parts, sandbox
from rqp.backends import Backends
from rqp.jobs import ChunkSpec, seal_spec
from rqp.ledger import Head, Ledger, job_id
from rqp.parts import open_groups
from rqp.status import StatusRecord
from rqp.workload import Workload
from rqp_processor.chunk import ChunkProcessor

LIMIT = 64 << 10


def _chunk(world, wid: str, n: int, script: str, **settings):
    """A workload of ``n`` records ``{"n": i}`` in one queued chunk, and a processor for it."""
    world.pack(wid, [{"n": i} for i in range(n)], script=script)
    w = Workload.open(world.store, world.keys, wid, world.trust())
    led = Ledger(world.r, wid)
    led.begin(
        now=time.time(), fmt="jsonl", scheduler="t:1", max_attempts=3, pin=w.seal_pin(), signer=w.signer,
        head=Head().seal(w),
    )  # fmt: skip
    jid = job_id(wid, "c00000000", 0)
    spec = ChunkSpec(wid, "c00000000", ((0, n, 1),), 3, 0.0, 0.0, time.time())
    pipe = world.r.pipeline()
    led.put_chunk(
        pipe, "c00000000", w.scope("c00000000").seal_packed("record", [(i, b'{"n": %d}' % i) for i in range(n)])
    )
    led.add_jobs(pipe, {jid: seal_spec(w, jid, spec)})
    pipe.execute()
    cfg = dataclasses.replace(world.settings, **settings)
    pool = sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(cfg), warm=False)
    backends = Backends(
        cfg, redis_client=world.r, blobs=world.store, queue=world.mq(), keys=world.keys, trust=world.trust()
    )
    return w, led, jid, ChunkProcessor(backends, worker_name="test:1", pool=pool)


def _results(world, w: Workload, led: Ledger, jid: str) -> dict[int, bytes]:
    part = led.parts()["c00000000"]
    raw = world.store.get(part.name)
    return dict(zip(*open_groups(raw, part.name, w.scope(jid)), strict=True))


def test_a_result_at_the_limit_is_done_and_one_byte_over_fails_alone_for_good(world):
    # JSON text of 'x' * k is k + 2 bytes: record 1's is exactly LIMIT, record 3's one byte more
    script = (
        f"def process(r):\n"
        f"    if r['n'] == 1:\n        return 'x' * ({LIMIT} - 2)\n"
        f"    if r['n'] == 3:\n        return 'x' * ({LIMIT} - 1)\n"
        f"    return r['n']\n"
    )
    w, led, jid, proc = _chunk(world, "limits", 5, script, max_result_bytes=LIMIT)
    try:
        out = proc.run(jid, w.id, base64.b64encode(led.spec(jid)).decode())
    finally:
        proc.pool.close()
    assert out == {"done": 4, "failed": 1, "retrying": 0}  # never retried: it would only repeat
    assert led.done_bits(list(range(5))) == [True, True, True, False, True]
    got = _results(world, w, led, jid)
    assert got == {0: b"0", 1: b'"' + b"x" * (LIMIT - 2) + b'"', 2: b"2", 4: b"4"}
    st = StatusRecord.open(w, 3, led.status(3))
    assert st.state == "failed" and st.attempts == 1
    assert st.error.startswith(f"result of record 3 is {LIMIT + 1} bytes, over RQP_MAX_RESULT_BYTES ({LIMIT}); ")


def test_a_chunk_of_large_results_streams_to_its_part_in_bounded_memory(world, monkeypatch):
    """40 results of 1.5 MiB (60 MiB in all) under a 2 MiB limit and a 4 MiB part budget: the
    part spills to an unnamed file, the worker's Python allocations peak at a small multiple of
    one result, and the part decodes to every result."""
    monkeypatch.setattr(parts, "PART_MEMORY_BYTES", 4 << 20)
    size, n = 3 << 19, 40
    script = f"def process(r):\n    return chr(97 + r['n'] % 26) * {size - 2}\n"
    w, led, jid, proc = _chunk(world, "big", n, script, max_result_bytes=2 << 20)
    spilled: list[bool] = []
    real_upload = parts.PartWriter.upload

    def upload(self, store, name):  # records whether this part went through the file
        spilled.append(self.spilled)
        return real_upload(self, store, name)

    monkeypatch.setattr(parts.PartWriter, "upload", upload)
    tracemalloc.start()
    try:
        out = proc.run(jid, w.id, base64.b64encode(led.spec(jid)).decode())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        proc.pool.close()
    assert out == {"done": n, "failed": 0, "retrying": 0}
    assert spilled == [True]
    total = n * size
    assert peak < 12 * size + (4 << 20), f"peak {peak >> 20} MiB for {total >> 20} MiB of results"
    got = _results(world, w, led, jid)
    assert sorted(got) == list(range(n))
    assert all(got[i] == b'"' + bytes([97 + i % 26]) * (size - 2) + b'"' for i in range(n))


def test_a_spilled_part_leaves_no_file_and_has_the_in_memory_layout(world):
    """The same results give the same entries whether the part spilled or not; the spill file
    has no name, so nothing of it is left on disk."""
    w = Workload.open(world.store, world.keys, world.pack("layout", [{"n": 0}]), world.trust())
    results = [(i, b"%d" % i * 1000) for i in range(50)]
    for budget in (1 << 30, 4096):
        with parts.PartWriter(w, budget=budget, spill_dir=str(world.root), group_bytes=8192) as part:
            for k in range(0, 50, 7):
                part.add(results[k : k + 7])
            assert part.spilled == (budget == 4096) and part.entries == 50  # groups sealed on the way
            assert not [f for f in os.listdir(world.root) if f.startswith("rqp-part-")]
            part.upload(world.store, f"p{budget}")
        raw = world.store.get(f"p{budget}")
        assert list(zip(*open_groups(raw, "p", w.seals), strict=True)) == results


@pytest.mark.parametrize("budget", [None, 0])
def test_the_part_writer_accepts_the_default_and_a_zero_budget(world, budget):
    w = Workload.open(world.store, world.keys, world.pack(f"b{budget}".lower(), [{"n": 0}]), world.trust())
    with parts.PartWriter(w, budget=budget) as part:
        part.add([(7, b"42")])
        part.upload(world.store, "one")
        assert part.spilled == (budget == 0)
    assert open_groups(world.store.get("one"), "one", w.seals) == ([7], [b"42"])
