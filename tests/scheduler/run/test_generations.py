"""Generations (issue #23 item 6): ``rqp pack --replace`` of a workload that *ended* keeps that
generation readable under ``superseded/`` and the scheduler starts the new one fresh -- but only
when the superseded generation is the one Redis pinned and its sealed head is closed, and the new
manifest is newer. Everything else stays refused as "replaced while unfinished"."""

from __future__ import annotations

import json

import pytest

from rqp.cli.results import read_results, superseded
from rqp.errors import IntegrityError
from rqp.ledger import Ledger, Meta, WorkloadKeys
from rqp.oplog import post
from rqp.workload import SUPERSEDED, Workload, blob_name, pack

DOUBLE = "def process(r):\n    return r['n'] * 2\n"
TRIPLE = "def process(r):\n    return r['n'] * 3\n"


def _repack(world, wid: str, records: list[dict], script: str, **kw) -> None:
    """``rqp pack --replace`` of ``wid`` with new data and script."""
    data = world.root / f"{wid}-next.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in records))
    source = world.root / f"{wid}-next.py"
    source.write_text(script)
    pack(world.store, world.keys, wid, data, source, signer=world.signer.key, replace=True, **kw)


def _results(world, workload: Workload) -> dict[int, int]:
    return {d["id"]: d["result"] for d in map(json.loads, read_results(world.store, workload))}


def _blobs(world, wid: str) -> set[str]:
    return {n.removeprefix(blob_name(wid, "")) for n in world.store.list(blob_name(wid, ""))}


def _run_on_a_new_processor(world, run) -> None:
    """Run a new generation to its end on a processor of its own: one that ran the previous
    generation keeps its script host warm under the workload's id and would run the old script
    (``rqp.sandbox.ScriptPool``; reported to processor/)."""
    fresh = world.processor("test:2")
    try:
        world.run_to_end(run, fresh)
    finally:
        fresh.pool.close()


def _ended(world, proc, wid: str) -> Workload:
    run = world.run(wid)
    world.run_to_end(run, proc)
    return run.workload


def test_a_workload_repacked_after_it_ended_runs_as_a_new_generation(world, proc):
    wid = world.pack("gens", [{"n": n} for n in range(6)], script=DOUBLE)
    first = _ended(world, proc, wid)
    assert _results(world, first) == {n: 2 * n for n in range(6)}

    _repack(world, wid, [{"n": n} for n in range(10)], TRIPLE)
    kept = {SUPERSEDED + leaf for leaf in ("manifest.json", "key.json", "summary.enc", "results.enc")}
    assert kept <= _blobs(world, wid)
    assert not any(n.startswith("parts/") for n in _blobs(world, wid))  # the old parts went
    # until the new generation ends, the old results are what 'rqp results' reads
    previous = superseded(world.backends(), world.backends().workload(wid))
    assert previous is not None and _results(world, previous) == {n: 2 * n for n in range(6)}

    run = world.run(wid)  # not refused as "replaced while unfinished": a new generation
    assert Ledger(world.r, wid).state() == "running"
    assert superseded(world.backends(), run.workload) is not None  # still readable while it runs
    _run_on_a_new_processor(world, run)
    assert world.refused == []
    assert _results(world, run.workload) == {n: 3 * n for n in range(10)}
    assert not any(n.startswith(SUPERSEDED) for n in _blobs(world, wid))  # gone once it ended
    assert superseded(world.backends(), run.workload) is None
    assert Ledger(world.r, wid).state() == "done"


def test_a_new_generation_clears_the_old_state_but_keeps_the_signed_requests_and_the_lock(world, proc):
    wid = world.pack("keeps", [{"n": n} for n in range(4)])
    _ended(world, proc, wid)
    _repack(world, wid, [{"n": n} for n in range(4)], TRIPLE)
    post(world.r, world.signer.key, wid, "priority", "high", "alice@host")
    keys = WorkloadKeys(wid)
    requests = world.r.llen(keys.control)
    assert requests >= 1
    stale = keys.chunk("c00000000")  # left over, it would make the new enqueue skip its first chunk
    world.r.set(stale, b"x")
    run = world.run(wid)
    assert not world.r.exists(stale)
    assert world.r.llen(keys.control) == requests  # a request for the new generation stays
    assert world.r.get(keys.lock) is not None  # the run still holds its lock
    run.controls.poll()
    assert run.controls.priority.value == "high"
    assert world.r.hget(keys.meta, Meta.ENQUEUED) in (b"0", "0")  # counters of the new generation


def test_repacking_a_running_workload_is_still_refused_at_start(world, proc):
    wid = world.pack("running", [{"n": n} for n in range(12)])
    run = world.run(wid)
    run.step()
    world.work(proc)
    run.lock.release()
    _repack(world, wid, [{"n": n} for n in range(12)], TRIPLE)  # no summary: overwritten, as before
    assert not any(n.startswith(SUPERSEDED) for n in _blobs(world, wid))
    with pytest.raises(IntegrityError, match=r"was replaced while unfinished: this version .* let that one finish"):
        world.run(wid)
    assert Ledger(world.r, wid).state() == "running"  # its state untouched


def test_a_superseded_generation_whose_head_is_not_closed_is_refused(world, proc):
    """A Redis writer who puts back the ended generation's head from before it ended (sealed
    under its key, so it opens) makes it look unfinished: the new generation does not start."""
    wid = world.pack("openhead", [{"n": n} for n in range(12)])
    run = world.run(wid)
    run.step()
    midway = Ledger(world.r, wid).head()
    world.run_to_end(run, proc)
    _repack(world, wid, [{"n": n} for n in range(3)], TRIPLE)
    world.r.hset(WorkloadKeys(wid).meta, Meta.HEAD, midway or b"")
    with pytest.raises(
        IntegrityError, match=r"replaced while unfinished.*has not ended: its sealed head is not closed"
    ):
        world.run(wid)
    assert Ledger(world.r, wid).state() == "done"  # nothing cleared


def test_a_blob_writer_cannot_make_a_running_generation_restart(world, proc):
    """Generation 2 runs after generation 1 ended. A blob writer holding every signed blob ever
    written: (a) an older generation left under superseded/ changes nothing (it resumes, not
    restarts); (b) the running generation moved under superseded/ and generation 1 put back as
    current is refused (its head is not closed); (c) a third signed version packed over the
    running one, with generation 1 under superseded/, is refused (not the pinned one)."""
    wid = world.pack("writer", [{"n": n} for n in range(6)])
    _ended(world, proc, wid)
    gen1 = {
        leaf: world.store.get(blob_name(wid, leaf)) for leaf in ("manifest.json", "key.json", "data.enc", "script.enc")
    }
    _repack(world, wid, [{"n": n} for n in range(12)], TRIPLE)
    run = world.run(wid)
    run.step()
    world.work(proc)
    run.lock.release()
    led = Ledger(world.r, wid)
    enqueued = led.meta()[Meta.ENQUEUED]
    assert int(enqueued) > 0

    # (a) generation 1 under superseded/ (as it is), generation 2 current: a resume
    again = world.run(wid)
    assert led.meta()[Meta.ENQUEUED] == enqueued  # a new generation would begin at 0
    again.lock.release()

    # (b) generation 2 moved under superseded/, generation 1 back as current
    gen2 = {
        leaf: world.store.get(blob_name(wid, leaf)) for leaf in ("manifest.json", "key.json", "data.enc", "script.enc")
    }
    for leaf in ("manifest.json", "key.json"):
        world.store.put(blob_name(wid, SUPERSEDED + leaf), gen2[leaf])
    for leaf, raw in gen1.items():
        world.store.put(blob_name(wid, leaf), raw)
    with pytest.raises(IntegrityError, match=r"replaced while unfinished.*has not ended"):
        world.run(wid)
    assert led.meta()[Meta.ENQUEUED] == enqueued

    # (c) a third genuine version over the running one, generation 1 under superseded/
    for leaf, raw in gen2.items():
        world.store.put(blob_name(wid, leaf), raw)
    for leaf in ("manifest.json", "key.json"):
        world.store.put(blob_name(wid, SUPERSEDED + leaf), gen1[leaf])
    _repack(world, wid, [{"n": 1}], DOUBLE)
    with pytest.raises(IntegrityError, match=r"replaced while unfinished.*not the one pinned in Redis either"):
        world.run(wid)
    assert led.meta()[Meta.ENQUEUED] == enqueued


def test_an_older_version_put_back_after_the_new_generation_ended_is_refused(world, proc):
    """Generation 2 ended; a blob writer moves it under superseded/ and puts generation 1 back as
    current: its pin and closed head match, but generation 1 is older -- a replay, refused."""
    wid = world.pack("replay", [{"n": n} for n in range(4)])
    _ended(world, proc, wid)
    gen1 = {
        leaf: world.store.get(blob_name(wid, leaf)) for leaf in ("manifest.json", "key.json", "data.enc", "script.enc")
    }
    _repack(world, wid, [{"n": n} for n in range(5)], TRIPLE)
    _ended(world, proc, wid)
    for leaf in ("manifest.json", "key.json", "summary.enc", "results.enc"):
        world.store.put(blob_name(wid, SUPERSEDED + leaf), world.store.get(blob_name(wid, leaf)))
    for leaf, raw in gen1.items():
        world.store.put(blob_name(wid, leaf), raw)
    with pytest.raises(
        IntegrityError, match=r"replaced while unfinished.*packed before the generation it would replace"
    ):
        world.run(wid)
    assert Ledger(world.r, wid).state() == "done"


def test_shred_previous_drops_the_old_results_and_shreds_its_key_once_the_new_one_starts(world, proc):
    wid = world.pack("shred", [{"n": n} for n in range(4)])
    _ended(world, proc, wid)
    _repack(world, wid, [{"n": n} for n in range(4)], TRIPLE, shred_previous=True)
    assert {n for n in _blobs(world, wid) if n.startswith(SUPERSEDED)} == {
        SUPERSEDED + leaf for leaf in ("manifest.json", "key.json", "shred")
    }
    assert superseded(world.backends(), world.backends().workload(wid)) is None  # no old results shown
    old_key = world.store.get(blob_name(wid, SUPERSEDED + "key.json"))
    written: list[bytes] = []
    put = world.store.put

    def spy(name: str, data: bytes, **kw) -> None:
        if name == blob_name(wid, SUPERSEDED + "key.json"):
            written.append(data)
        put(name, data, **kw)

    world.store.put = spy  # type: ignore[method-assign] - records what overwrites the key
    try:
        run = world.run(wid)
    finally:
        world.store.put = put  # type: ignore[method-assign]
    assert len(written) == 1 and written[0] != old_key and len(written[0]) >= len(old_key)
    assert not any(n.startswith(SUPERSEDED) for n in _blobs(world, wid))
    _run_on_a_new_processor(world, run)
    assert _results(world, run.workload) == {n: 3 * n for n in range(4)}


def test_packing_twice_before_the_new_generation_runs_keeps_the_ended_one(world, proc):
    """A second ``pack --replace`` before the new generation ran finds no summary: it overwrites
    that unstarted version and leaves the ended generation under superseded/ as it was."""
    wid = world.pack("twice", [{"n": n} for n in range(4)])
    first = _ended(world, proc, wid)
    _repack(world, wid, [{"n": n} for n in range(2)], DOUBLE)
    kept = world.store.get(blob_name(wid, SUPERSEDED + "manifest.json"))
    _repack(world, wid, [{"n": n} for n in range(5)], TRIPLE)
    assert world.store.get(blob_name(wid, SUPERSEDED + "manifest.json")) == kept == first.manifest.to_json()
    run = world.run(wid)
    _run_on_a_new_processor(world, run)
    assert _results(world, run.workload) == {n: 3 * n for n in range(5)}


def test_an_earlier_rounds_summary_kept_by_the_repack_is_refused(world, proc, operator):
    """Eighth review, E4: after a retry round ended, a blob writer puts round 1's blobs back and
    has ``rqp pack --replace`` run: the packer (no KEK) kept that round-1 summary as "the
    generation it replaced". The scheduler, which can open it, refuses to start the new
    generation over a kept summary of another round than the one the old generation ended in."""
    from rounds import keep_round, put_back, retry_round

    fails_on_five = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n']\n"
    wid = world.pack("e4", [{"n": n} for n in range(6)], script=fails_on_five)
    _ended(world, proc, wid)
    round1 = keep_round(world, wid)
    retry_round(world, proc, operator, wid)
    put_back(world, wid, round1)
    _repack(world, wid, [{"n": n} for n in range(3)], TRIPLE)
    with pytest.raises(
        IntegrityError, match=r"summary kept under superseded/ is round 1's, but that generation ended in round 2"
    ):
        world.run(wid)
    assert Ledger(world.r, wid).state() == "done"  # nothing cleared
