"""Checkpoints in the blob store (issue #26 item 4): a workload whose Redis was lost entirely
resumes from its last checkpoint -- the records in it are not run again, the chunks after it are,
and the results hold every record exactly once."""

from __future__ import annotations

import json

import pytest
from world import world  # noqa: F401 - fixture

from rqp.cli.results import read_results
from rqp.errors import ConfigError
from rqp.ledger import ChunkKind, Ledger
from rqp.summary import read_summary
from rqp.workload import blob_name
from rqp_scheduler.run.checkpoint import CHECKPOINT_DIR, RESUME_CHUNK_GAP, segment_blob

RECORDS = 40
FAILING = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"


def _results(world, wid: str) -> dict[int, int]:  # noqa: F811
    lines = [json.loads(x) for x in read_results(world.store, world.backends().workload(wid))]
    ids = [d["id"] for d in lines]
    assert len(ids) == len(set(ids)), "a record's result twice"
    return {d["id"]: d["result"] for d in lines}


def _segments(world, wid: str) -> list[str]:  # noqa: F811
    return sorted(world.store.list(blob_name(wid, CHECKPOINT_DIR)))


def _records_run_after_resume(world, wid: str) -> int:  # noqa: F811
    """Records done by chunks the resumed run queued (numbered past the resume's gap)."""
    from rqp.status import ChunkNote

    w = world.backends().workload(wid)
    count = 0
    for chunk, sealed in Ledger(world.r, wid).notes():
        if ChunkKind.of(chunk) is ChunkKind.DATA and int(chunk[1:]) >= RESUME_CHUNK_GAP:
            count += len(list(ChunkNote.open(w, chunk, sealed).done_ids()))
    return count


def _partly_run(world, proc, wid: str):  # noqa: F811
    """Run the workload part-way: 3 chunks committed and checkpointed, 3 more committed after
    the checkpoint (not in it), 3 more in flight when Redis is lost."""
    run = world.run(wid)
    run.checkpoints.interval = 3600.0  # written here by hand, not by the loop
    run.step()
    assert world.work(proc) == 3
    assert run.checkpoints.write()
    assert run.checkpoints.cursor == 12
    run.step()
    assert world.work(proc) == 3  # committed after the checkpoint
    run.step()  # queued, never run
    return run


def test_a_run_resumes_from_its_checkpoint_after_redis_is_lost(world, proc):  # noqa: F811
    wid = world.pack("ckpt", [{"n": i} for i in range(RECORDS)])
    _partly_run(world, proc, wid)
    assert len(_segments(world, wid)) == 1
    world.r.flushall()  # both Redis copies lost: a fresh, empty Redis

    resumed = world.run(wid)
    assert resumed.checkpoints.cursor == 12
    assert resumed.ctx.head.enqueued == 12 and resumed.ctx.head.chunks >= RESUME_CHUNK_GAP
    world.run_to_end(resumed, proc)

    assert _results(world, wid) == {i: i * 2 for i in range(RECORDS)}
    assert _records_run_after_resume(world, wid) == RECORDS - 12  # the checkpoint's 12 never ran again
    assert read_summary(world.store, world.backends().workload(wid)).done == RECORDS
    assert _segments(world, wid) == []  # an ended workload's checkpoints go


def test_records_failed_for_good_are_carried_by_the_checkpoint(world, proc):  # noqa: F811
    wid = world.pack("ckpt-failed", [{"n": i} for i in range(RECORDS)], script=FAILING)
    run = world.run(wid)
    run.checkpoints.interval = 3600.0
    ledger = Ledger(world.r, wid)
    while 5 not in ledger.failed_ids():  # record 5 fails, is retried (max_attempts 2), fails for good
        assert not run.step()
        world.work(proc)
    assert run.checkpoints.write()
    covered = run.checkpoints.cursor
    assert covered > 5
    world.r.flushall()

    resumed = world.run(wid)
    assert resumed.checkpoints.cursor == covered
    world.run_to_end(resumed, proc)
    assert _results(world, wid) == {i: i * 2 for i in range(RECORDS) if i != 5}
    summary = read_summary(world.store, world.backends().workload(wid))
    assert [f.id for f in summary.failures] == [5]
    assert _records_run_after_resume(world, wid) == RECORDS - covered


def test_a_segment_that_does_not_open_resumes_from_the_one_before(world, proc):  # noqa: F811
    wid = world.pack("ckpt-junk", [{"n": i} for i in range(RECORDS)])
    run = world.run(wid)
    run.checkpoints.interval = 3600.0
    run.step()
    world.work(proc)
    assert run.checkpoints.write()
    run.step()
    world.work(proc)
    assert run.checkpoints.write()
    assert run.checkpoints.cursor == 24
    world.store.put(segment_blob(wid, 2), b"junk a blob writer left")
    world.r.flushall()

    resumed = world.run(wid)
    assert resumed.checkpoints.cursor == 12  # segment 1 only
    assert _segments(world, wid) == [segment_blob(wid, 1)]  # the rest of the chain is gone
    world.run_to_end(resumed, proc)
    assert _results(world, wid) == {i: i * 2 for i in range(RECORDS)}
    assert _records_run_after_resume(world, wid) == RECORDS - 12


def test_a_segment_of_another_chain_is_not_spliced_in(world, proc):  # noqa: F811
    """Segment 2 of a run that resumed from segment 1 replaces the lost run's segment 2; the lost
    run's segment 3 (put back by a blob writer) does not follow it and is not read."""
    wid = world.pack("ckpt-chain", [{"n": i} for i in range(RECORDS)])
    run = world.run(wid)
    run.checkpoints.interval = 3600.0
    for _ in range(3):
        run.step()
        world.work(proc)
        assert run.checkpoints.write()
    third = world.store.get(segment_blob(wid, 3))
    world.store.delete(segment_blob(wid, 3))
    world.store.delete(segment_blob(wid, 2))
    world.r.flushall()

    resumed = world.run(wid)
    resumed.checkpoints.interval = 3600.0
    resumed.step()
    world.work(proc)
    assert resumed.checkpoints.write()  # its own segment 2
    world.store.put(segment_blob(wid, 3), third)
    world.r.flushall()

    again = world.run(wid)
    assert again.checkpoints.cursor == resumed.checkpoints.cursor
    world.run_to_end(again, proc)
    assert _results(world, wid) == {i: i * 2 for i in range(RECORDS)}


def test_a_workload_redis_still_knows_is_not_restored(world, proc):  # noqa: F811
    wid = world.pack("ckpt-kept", [{"n": i} for i in range(RECORDS)])
    run = _partly_run(world, proc, wid)
    run.lock.release()
    again = world.run(wid)  # a scheduler restart with Redis intact: Redis's own state, all 6 chunks
    notes = [chunk for chunk, _ in Ledger(world.r, wid).notes()]
    assert len(notes) == 6 and again.ctx.head.chunks < RESUME_CHUNK_GAP


def test_a_workload_whose_meta_alone_was_deleted_is_not_restored(world, proc):  # noqa: F811
    """A Redis writer who deletes only the meta hash: the rest of its state is there, so the run
    starts over skipping the chunks Redis has (as before checkpoints), and the checkpoint is not
    written on top of it (its records would be claimed twice)."""
    wid = world.pack("ckpt-meta", [{"n": i} for i in range(RECORDS)])
    run = _partly_run(world, proc, wid)
    run.lock.release()
    world.r.delete(Ledger(world.r, wid).k.meta)
    again = world.run(wid)
    assert again.checkpoints.cursor == 0 and again.ctx.head.chunks < RESUME_CHUNK_GAP
    world.run_to_end(again, proc)
    assert _results(world, wid) == {i: i * 2 for i in range(RECORDS)}


def test_a_restarted_scheduler_starts_the_chain_again_and_it_still_resumes(world, proc):  # noqa: F811
    """A scheduler restarted with Redis intact writes the checkpoint again from the first record
    (segment 1 over the old one); old segments past its chain no longer follow and are not read."""
    wid = world.pack("ckpt-restart", [{"n": i} for i in range(RECORDS)])
    run = world.run(wid)
    run.checkpoints.interval = 3600.0
    for _ in range(2):
        run.step()
        world.work(proc)
        assert run.checkpoints.write()
    run.lock.release()
    again = world.run(wid)  # Redis intact
    again.checkpoints.interval = 3600.0
    again.step()
    world.work(proc)
    assert again.checkpoints.write()
    covered, last = again.checkpoints.cursor, again.checkpoints.seq
    assert covered > 24
    world.r.flushall()

    resumed = world.run(wid)
    assert resumed.checkpoints.cursor == covered
    assert _segments(world, wid) == [segment_blob(wid, i) for i in range(1, last + 1)]
    world.run_to_end(resumed, proc)
    assert _results(world, wid) == {i: i * 2 for i in range(RECORDS)}


def test_the_interval_is_a_setting():
    from rqp.config import DEFAULT_CHECKPOINT_SECONDS, Settings

    assert Settings().checkpoint_seconds == DEFAULT_CHECKPOINT_SECONDS
    assert Settings.from_mapping({"checkpoint_seconds": "2.5"}).checkpoint_seconds == 2.5
    with pytest.raises(ConfigError, match="RQP_CHECKPOINT_SECONDS"):
        Settings.from_mapping({"checkpoint_seconds": "-1"})


ONCE = (
    "failed = set()\n"
    "def process(r):\n"
    "    if r['n'] in (5, 6) and r['n'] not in failed:\n"
    "        failed.add(r['n'])\n"
    "        raise ValueError('once')\n"
    "    return r['n'] * 2\n"
)


def test_records_done_by_a_retry_chunk_are_carried_with_its_note(world, proc):  # noqa: F811
    """Records 5 and 6 fail once and are done by a retry chunk: the checkpoint carries that
    chunk's note beside their data chunk's, and the resumed run does neither again."""
    wid = world.pack("ckpt-retried", [{"n": i} for i in range(RECORDS)], script=ONCE)
    run = world.run(wid)
    run.checkpoints.interval = 3600.0
    ledger = Ledger(world.r, wid)
    while not all(ledger.done_bits([5, 6])):
        assert not run.step()
        world.work(proc)
    assert run.checkpoints.write()
    covered = run.checkpoints.cursor
    assert covered > 6
    assert any(ChunkKind.of(chunk) is ChunkKind.RETRY for chunk, _ in ledger.notes())
    world.r.flushall()

    resumed = world.run(wid)
    assert resumed.checkpoints.cursor == covered
    restored = [chunk for chunk, _ in Ledger(world.r, wid).notes()]
    assert any(ChunkKind.of(chunk) is ChunkKind.RETRY for chunk in restored), restored
    world.run_to_end(resumed, proc)
    assert _results(world, wid) == {i: i * 2 for i in range(RECORDS)}
    assert _records_run_after_resume(world, wid) == RECORDS - covered


def test_malformed_records_inside_chunks_are_carried_as_failed(world, proc):  # noqa: F811
    """Records that are not JSON fail at the enqueue and leave holes in their chunk's runs: the
    checkpoint carries their failed statuses, and the resumed run's summary names each once."""
    from rqp.workload import pack

    bad = {2, 9, 13}
    data = world.root / "holes.jsonl"
    data.write_text("".join("{not json\n" if i in bad else json.dumps({"n": i}) + "\n" for i in range(RECORDS)))
    (world.root / "holes.py").write_text("def process(r):\n    return r['n'] * 2\n")
    pack(world.store, world.keys, "holes", data, world.root / "holes.py", signer=world.signer.key)
    run = world.run("holes")
    run.checkpoints.interval = 3600.0
    for _ in range(2):
        run.step()
        world.work(proc)
    assert run.checkpoints.write()
    covered = run.checkpoints.cursor
    assert covered > max(bad)
    world.r.flushall()

    resumed = world.run("holes")
    assert resumed.checkpoints.cursor == covered
    world.run_to_end(resumed, proc)
    assert _results(world, "holes") == {i: i * 2 for i in range(RECORDS) if i not in bad}
    summary = read_summary(world.store, world.backends().workload("holes"))
    assert sorted(f.id for f in summary.failures) == sorted(bad)
