"""Result parts are named with a token the scheduler draws each time it queues a chunk: two
schedulers on either side of a Redis split brain number their chunks alike (c00000055 on both
sides, over different records), and one side's part overwrote the other's under the same name --
the HA test's workload failed with "the result of record 7693 is missing from chunk c00000055's
part"."""

# ruff: noqa: F811 - the world fixtures are imported by name, then taken as arguments
from __future__ import annotations

import pytest
from world import proc, world  # noqa: F401 - fixtures

from rqp.errors import IntegrityError
from rqp.jobs import ChunkSpec
from rqp.parts import PART_TOKEN_BYTES, part_name
from rqp.status import ChunkNote


def test_a_part_is_named_with_its_chunks_token_and_an_old_spec_without_one():
    token = "0123456789abcdef"
    assert len(token) == 2 * PART_TOKEN_BYTES
    assert part_name("w1", "c00000055", 0, token) == "workloads/w1/parts/c00000055-0-0123456789abcdef.part"
    assert part_name("w1", "c00000055", 0, "") == "workloads/w1/parts/c00000055-0.part"  # sealed before tokens


@pytest.mark.parametrize("junk", ["../../key.json", "0123456789ABCDEF", "0123", "0123456789abcdef0", "x" * 16])
def test_a_token_that_is_not_one_is_refused(junk):
    """Sealed under the data key, which processors hold: never a path, never another length."""
    with pytest.raises(IntegrityError, match="names a results part token that is not one"):
        part_name("w1", "c00000055", 0, junk)


def test_the_token_travels_in_the_spec_and_the_note():
    spec = ChunkSpec("w1", "c00000055", ((10, 5, 1),), 3, 1.0, 60.0, part="0123456789abcdef")
    assert ChunkSpec.from_json(spec.to_json()).part == spec.part
    assert ChunkSpec.from_json(ChunkSpec("w1", "c1", ((0, 1, 1),), 3, 1.0, 60.0).to_json()).part == ""
    note = ChunkNote("c00000055", "rqp-w1-c00000055-0", ((10, 5, 1),), (), None, None, None, "vm:1", part=spec.part)
    assert ChunkNote.from_json(note.to_json()).part == spec.part


def test_each_queueing_of_a_chunk_draws_its_own_token(world, proc):
    from rqp_scheduler.run.jobs import chunk_spec

    wid = world.pack("tokens", [{"n": i} for i in range(8)])
    run = world.run(wid)
    a = chunk_spec(run.ctx, "c00000000", [(0, 1)], 0.0)
    b = chunk_spec(run.ctx, "c00000000", [(0, 1)], 0.0)  # the same chunk, queued by another scheduler
    assert a.part and b.part and a.part != b.part
    assert part_name(wid, a.chunk, 0, a.part) != part_name(wid, b.chunk, 0, b.part)
    world.run_to_end(run, proc)  # a whole run reads the parts its notes name
    assert run.summary is not None and run.summary.done == 8
