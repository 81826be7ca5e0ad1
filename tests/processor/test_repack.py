"""A processor that cached a workload keeps up when its id is packed anew (issue #23 item 6):
deleting a workload and packing a new one under the same id while a processor is up runs the
new one, instead of failing every record as 'forged, altered or replayed'."""

from __future__ import annotations

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
        world.pack(wid, [{"n": n} for n in range(10)])  # new data, new key, same id
        world.run_to_end(world.run(wid), proc)
        again = read_progress(world.r, wid)
        assert again is not None and (again.state, again.done, again.failed) == ("done", 10, 0), world.refused
        assert world.refused == []
    finally:
        proc.pool.close()
