"""The results root is built from inputs.bin and the results object *read back* from the blob
store (streaming), so what is read back must be byte for byte what consolidation wrote: a
blob-store writer who rewrites ``inputs.bin.staged`` or ``results.enc.staged`` in between -- with
the data key, which every processor holds, even with well-formed content -- gets nothing signed;
the consolidation fails with one line and, once the writer is gone, runs again to the true root
(fifth review, C1)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rqp.crypto import aad, encrypt_stream
from rqp.errors import IntegrityError
from rqp.merkle import HASH_SIZE
from rqp.results_root import INPUTS_BLOB, LEAVES_BLOB, STAGED_SUFFIX, input_digest, input_key
from rqp.summary import RESULTS_BLOB, SUMMARY_BLOB, read_summary
from rqp.workload import blob_name

N = 12


class _Between:
    """A second writer in the blob store: once consolidation has stored ``after``, it rewrites
    ``target`` with ``forge(workload)`` -- once, then it is gone."""

    def __init__(self, store, after: str, target: str, forge) -> None:
        self.store, self.after, self.target, self.forge, self.done = store, after, target, forge, False
        self.real = store.put_stream

    def put_stream(self, name, chunks, *args, **kwargs):
        out = self.real(name, chunks, *args, **kwargs)
        if name == self.after and not self.done:
            self.done = True
            self.store.put(self.target, self.forge())
        return out


def _suffix(run) -> str:
    """A run's staged names carry its lock's generation (a paused former holder never shares them)."""
    return STAGED_SUFFIX + "." + run.lock.generation()


def _ready(world, proc, wid):
    run = world.run(wid)
    run.enqueuer.fill_window()
    world.work(proc)
    return run


@pytest.mark.parametrize("enqueue_digests", [True, False], ids=["enqueue-digests", "data-read-again"])
def test_inputs_rewritten_between_write_and_read_get_nothing_signed(world, proc, monkeypatch, enqueue_digests):
    world.settings = replace(world.settings, window_chunks=100)
    wid = world.pack("readback-in", [{"n": i} for i in range(N)])
    run = _ready(world, proc, wid)
    if not enqueue_digests:
        run.ctx.inputs = None  # as after a restart: the root's pass reads the data again
    w = run.workload
    staged = blob_name(wid, INPUTS_BLOB) + _suffix(run)
    # the forger holds the data key: record 0's digest as if its input had been {"n": 999}
    forged = input_digest(input_key(w.key, wid), 0, b'{"n": 999}')

    def forge() -> bytes:
        return forged + world.store.get(staged)[HASH_SIZE:]

    writer = _Between(world.store, staged, staged, forge)
    monkeypatch.setattr(world.store, "put_stream", writer.put_stream)
    with pytest.raises(IntegrityError, match=r"inputs\.bin\.staged\.1 changed between its write and its read"):
        run.finisher.finish()
    assert writer.done and not world.store.exists(blob_name(wid, SUMMARY_BLOB))  # nothing signed, nothing ended
    summary = run.finisher.finish()  # the writer is gone: the consolidation runs again, to the true root
    assert summary.done == N
    assert world.store.get(blob_name(wid, INPUTS_BLOB))[:HASH_SIZE] != forged
    assert read_summary(world.store, w).done == N


@pytest.mark.parametrize("after", [RESULTS_BLOB, LEAVES_BLOB], ids=["after-results", "after-leaves"])
def test_results_rewritten_between_write_and_read_get_nothing_signed(world, proc, monkeypatch, after):
    """The root's one pass (``RootWhileWriting``) reads nothing back to make its leaves: it
    compares the staged object's stored bytes with the digest its writer took, once the results
    are written and again after the leaves are: a rewrite at either moment is refused."""
    world.settings = replace(world.settings, window_chunks=100)
    wid = world.pack("readback-res-" + after.split(".")[0], [{"n": i} for i in range(N)])
    run = _ready(world, proc, wid)
    w = run.workload
    results = blob_name(wid, RESULTS_BLOB) + _suffix(run)
    trigger = blob_name(wid, after) + _suffix(run)

    def forge() -> bytes:  # well-formed results, sealed with the data key, record 0's result changed
        lines = [f'{{"id":{i},"result":{1000 if i == 0 else i}}}\n'.encode() for i in range(N)]
        return b"".join(encrypt_stream(w.key, iter(lines), aad("results", wid)))

    # written after the results object (or the leaf hashes beside it) and before the swap
    writer = _Between(world.store, trigger, results, forge)
    monkeypatch.setattr(world.store, "put_stream", writer.put_stream)
    with pytest.raises(IntegrityError, match=r"results\.enc\.staged\.1 is not the results object consolidation wrote"):
        run.finisher.finish()
    assert writer.done and not world.store.exists(blob_name(wid, SUMMARY_BLOB))
    assert run.finisher.finish().done == N
