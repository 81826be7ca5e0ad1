"""The results part form a processor writes follows the chunk's spec (``ChunkSpec.part_form``):
a scheduler of this version asks for groups (``RQPP2``); an older scheduler's spec says nothing
and gets one sealed value per result (``RQPP1``), the form it reads -- so processors can be
upgraded before the scheduler without a workload failing at consolidation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from world import world  # noqa: F401 - a fixture

from rqp.cli.results import read_results
from rqp.jobs import PART_FORM, ChunkSpec
from rqp.ledger import Ledger
from rqp.parts import MAGIC, MAGIC_GROUPS, decode_part
from rqp.status import ChunkNote


def test_a_spec_says_which_form_its_scheduler_reads():
    spec = ChunkSpec("w1", "c1", ((0, 4, 1),), 3, 1.0, 60.0)
    assert spec.part_form == PART_FORM == 2
    assert json.loads(spec.to_json())["pf"] == 2
    assert ChunkSpec.from_json(spec.to_json()).part_form == 2
    older = {k: v for k, v in json.loads(spec.to_json()).items() if k != "pf"}  # an older scheduler's
    assert ChunkSpec.from_json(json.dumps(older).encode()).part_form == 1


def _run(world: Any, wid: str) -> dict[str, bytes]:  # noqa: F811
    """Run ``wid`` to the end; the raw parts its chunks committed (by chunk), read before
    consolidation deletes them."""
    world.pack(wid, [{"n": i} for i in range(12)])
    run = world.run(wid)
    proc = world.processor()
    raws: dict[str, bytes] = {}
    try:
        run.step()
        world.work(proc)
        for chunk, ref in Ledger(world.r, wid).parts().items():
            raws[chunk] = world.store.get(ref.name)
        world.run_to_end(run, proc)
    finally:
        proc.pool.close()
    lines = [json.loads(x) for x in read_results(world.store, world.backends().workload(wid))]
    assert sorted((d["id"], d["result"]) for d in lines) == [(i, i * 2) for i in range(12)]
    return raws


def test_this_version_s_scheduler_gets_parts_of_groups(world):  # noqa: F811
    raws = _run(world, "groups")
    assert raws and all(raw.startswith(MAGIC_GROUPS) for raw in raws.values())


def test_an_older_scheduler_s_spec_gets_parts_an_older_reader_opens(world, monkeypatch):  # noqa: F811
    real = ChunkSpec.to_json

    def older(self: ChunkSpec) -> bytes:  # what a scheduler before part forms sealed: no "pf"
        return json.dumps({k: v for k, v in json.loads(real(self)).items() if k != "pf"}).encode()

    monkeypatch.setattr(ChunkSpec, "to_json", older)
    raws = _run(world, "older")
    assert raws and all(raw.startswith(MAGIC) for raw in raws.values())
    # the older reader: each entry opened on its own under the job's key, AAD result|W|rid
    w = world.backends().workload("older")
    chunk, sealed = next(iter(Ledger(world.r, "older").notes()))
    note = ChunkNote.open(w, chunk, sealed)
    seals = w.scope(note.job)
    entries = list(decode_part(raws[chunk], "p"))
    assert [rid for rid, _ in entries] == list(note.done_ids())
    assert [seals.open_sealed("result", rid, value) for rid, value in entries] == [
        b"%d" % (rid * 2) for rid, _ in entries
    ]


@pytest.mark.parametrize("form", [0, 1, 2, 3])
def test_the_writer_takes_one_of_the_two_forms(form):
    from rqp.parts import PartWriter
    from rqp.workload import Seals

    assert PartWriter(Seals(bytes(32), "w1", "rqp-w1-c00000000-0"), form=form).form == (2 if form >= 2 else 1)
