"""A processor that cached a workload keeps up when its id is packed anew (issue #23 item 6):
deleting a workload and packing a new one under the same id while a processor is up runs the
new one, instead of failing every record as 'forged, altered or replayed'."""

from __future__ import annotations

import json

from world import world  # noqa: F401 - fixture

from rqp import control
from rqp.status import read_progress


def test_a_deleted_and_repacked_id_runs_on_a_processor_that_knew_the_old_one(world):  # noqa: F811
    wid = world.pack("reused", [{"n": n} for n in range(6)])
    proc = world.processor()
    try:
        world.run_to_end(world.run(wid), proc)
        first = read_progress(world.r, wid)
        assert first is not None and (first.done, first.failed) == (6, 0)
        control.delete(world.r, world.store, world.signer.key, wid, "alice@host")
        # new data, new script, new key, same id: the worker's warm script host must not run the old one
        world.pack(wid, [{"n": n} for n in range(10)], script="def process(r):\n    return r['n'] * 3\n")
        world.run_to_end(world.run(wid), proc)
        again = read_progress(world.r, wid)
        assert again is not None and (again.state, again.done, again.failed) == ("done", 10, 0), world.refused
        assert world.refused == []
        from rqp.cli.results import read_results
        from rqp.workload import Workload

        w = Workload.open(world.store, world.keys, wid, world.trust())
        results = {doc["id"]: doc["result"] for doc in map(json.loads, read_results(world.store, w))}
        assert results == {n: n * 3 for n in range(10)}  # the new script, not the old one's n * 2
    finally:
        proc.pool.close()


def test_a_workloads_version_is_digested_once_per_worker_not_per_chunk(world, monkeypatch):  # noqa: F811
    """The warm host's version check (``ChunkProcessor._same_version``) digests the manifest
    (canonical JSON + SHA-256, ~0.2 ms) once for the manifest object the context holds, not
    once per chunk (issue 28: a chunk's fixed cost)."""
    from rqp.workload import Manifest

    wid = world.pack("digest-once", [{"n": n} for n in range(12)])  # 3 chunks of 4, all queued
    world.run(wid).enqueuer.fill_window()
    proc = world.processor()
    calls: list[str] = []
    real = Manifest.content_digest

    def counted(self: Manifest) -> str:
        calls.append(self.workload)
        return real(self)

    monkeypatch.setattr(Manifest, "content_digest", counted)
    try:
        assert world.work(proc) == 3 and world.refused == []
    finally:
        proc.pool.close()
    # the start pin's check (once per context) and the version check (once per manifest)
    assert calls == [wid, wid]
    done = read_progress(world.r, wid)
    assert done is not None and done.done == 12
