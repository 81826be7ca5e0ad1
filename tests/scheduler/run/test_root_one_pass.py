"""Which way a consolidation builds its results root: the usual round (data chunks one after
another, no earlier round) makes its leaves in the pass that writes the results
(``RootWhileWriting``) and never reads the results object back through ``build_root``; what
the one pass does not cover (a retry round, retry chunks, chunks out of order) keeps
``build_root``'s read-back. The root the one pass signs is the one the stored blobs give when
read back, and a failure in it leaves no staged blob and no writer behind."""

from __future__ import annotations

import importlib
import threading
from dataclasses import replace

import pytest

import rqp.results_root as rr
from rqp.results_root import INPUTS_BLOB, LEAVES_BLOB, Attestation, build_root
from rqp.summary import RESULTS_BLOB, read_summary
from rqp.workload import blob_name

N = 30
#: the module (the package exports a function of the same name)
consolidate_module = importlib.import_module("rqp_scheduler.consolidate")


def _ready(world, proc, wid):
    run = world.run(wid)
    run.enqueuer.fill_window()
    world.work(proc)
    return run


def test_the_usual_round_builds_its_root_in_one_pass(world, proc, monkeypatch):
    world.settings = replace(world.settings, window_chunks=100)
    wid = world.pack("one-pass", [{"n": i} for i in range(N)])
    run = _ready(world, proc, wid)

    def no_read_back(*args, **kwargs):
        raise AssertionError("the usual round read its results back for the root")

    monkeypatch.setattr(consolidate_module, "build_root", no_read_back)
    summary = run.finisher.finish()
    assert summary.done == N and Attestation.from_dict(summary.root, wid).size == N
    # the root the one pass signed is the one the stored blobs give when read back
    monkeypatch.undo()
    store, w = world.store, run.workload
    leaves = store.get(blob_name(wid, LEAVES_BLOB))
    again = build_root(
        store, w, (), blob_name(wid, RESULTS_BLOB), [], N, None, inputs=[store.get(blob_name(wid, INPUTS_BLOB))]
    )
    assert again.root == Attestation.from_dict(summary.root, wid).root
    assert store.get(blob_name(wid, LEAVES_BLOB)) == leaves and len(leaves) == N * 32
    assert read_summary(store, w).root == summary.root


def test_a_consolidation_that_fails_in_the_one_pass_leaves_no_staged_blob(world, proc, monkeypatch):
    world.settings = replace(world.settings, window_chunks=100)
    wid = world.pack("one-pass-fail", [{"n": i} for i in range(N)])
    run = _ready(world, proc, wid)

    def broken(self, *args, **kwargs):
        raise RuntimeError("the signer is down")

    monkeypatch.setattr(rr.RootWhileWriting, "finish", broken)
    with pytest.raises(RuntimeError, match="the signer is down"):
        run.finisher.finish()
    assert [n for n in world.store.list(blob_name(wid, "")) if n.endswith(".staged")] == []
    assert [t for t in threading.enumerate() if t.name == "rqp-leaves-writer"] == []  # stopped, not left waiting
    monkeypatch.undo()
    assert run.finisher.finish().done == N
