"""``Workload.stream``: results as chunks commit, before consolidation, each exactly once and
verified under the workload's key; the streamed set is the consolidated one."""

from __future__ import annotations

import itertools

import pytest

import rqp
from rqp.ledger import Ledger, job_id
from rqp.workload import blob_name

SCRIPT = "def process(r):\n    if r['n'] % 7 == 5:\n        raise ValueError('bad')\n    return {'sq': r['n'] ** 2}\n"


@pytest.mark.timeout(120)  # a stream that only read consolidated results would wait here forever
def test_first_results_arrive_while_running_and_the_stream_equals_the_consolidated_results(client, world, proc):
    w = client.submit([{"n": i} for i in range(40)], SCRIPT, id="streamed")
    run = world.run(w.id)
    stream = w.stream(poll=0)
    run.step()
    world.work(proc)  # the first window of chunks commits
    early = w.status()
    assert early.state == "running" and 0 < early.done < 40
    first = list(itertools.islice(stream, early.done))
    assert w.status().state == "running"  # they came before the workload ended...
    assert not world.store.exists(blob_name(w.id, "results.enc"))  # ...and before consolidation
    world.run_to_end(run, proc)
    rest = list(stream)  # the rest, then the stream ends with the workload
    streamed = first + rest
    final = list(w.results())
    assert len(streamed) == len({x["id"] for x in streamed})  # each record once
    assert sorted(streamed, key=lambda x: x["id"]) == final
    assert len(final) == 40 - len(w.failures())


def test_a_stream_started_after_the_end_reads_the_consolidated_results(client, world, proc, run_to_end):
    w = client.submit([{"n": i} for i in range(12)], SCRIPT, id="late")
    run_to_end(w.id)
    assert not list(world.store.list(blob_name(w.id, "parts/")))  # parts are gone
    assert list(w.stream(poll=0)) == list(w.results())


def _committed_part(client, world, proc, wid):
    w = client.submit([{"n": i} for i in range(8)], "def process(r):\n    return r['n']\n", id=wid)
    run = world.run(w.id)
    run.step()
    world.work(proc)
    assert Ledger(world.r, w.id).parts()  # committed chunks name their parts
    name = sorted(world.store.list(blob_name(w.id, "parts/")))[0]
    return w, name


def test_a_result_moved_between_records_in_a_part_fails_the_stream(client, world, proc):
    """A part entry of the older form re-labelled as another record's does not open: the stream
    says so instead of yielding it (as consolidation would refuse it)."""
    from rqp.parts import _ENTRY, MAGIC, decode_part, open_groups, seal_part
    from rqp.workload import Workload

    w, name = _committed_part(client, world, proc, "tampered")
    opened = Workload.open(world.store, world.keys, w.id, world.trust())
    ref = Ledger(world.r, w.id).part_of("c00000000")
    assert ref is not None and ref.name == name
    seals = opened.scope(job_id(w.id, "c00000000", 0))
    ids, results = open_groups(world.store.get(name), name, seals)  # the worker's part: the current form
    entries = list(decode_part(seal_part(seals, list(zip(ids, results, strict=True))), name))  # as an older one
    (a, sa), (b, sb) = entries[0], entries[1]
    swapped = [(a, sb), (b, sa), *entries[2:]]
    world.store.put(name, MAGIC + b"".join(_ENTRY.pack(rid, len(s)) + s for rid, s in swapped))
    with pytest.raises(rqp.IntegrityError, match="is not job"):
        list(itertools.islice(w.stream(poll=0), 8))


def test_a_group_with_its_record_ids_edited_fails_the_stream(client, world, proc):
    """A group of the current form whose ids are edited (its first record named as another) does
    not open: the stream refuses it with the same line."""
    from rqp.parts import MAGIC_GROUPS

    w, name = _committed_part(client, world, proc, "relabelled")
    raw = bytearray(world.store.get(name))
    assert raw.startswith(MAGIC_GROUPS)
    at = len(MAGIC_GROUPS) + 4 + 12 + 4  # group length, nonce, run count: the first run's first id
    raw[at + 7] ^= 1  # record 0's results now claim to be record 1's onwards
    world.store.put(name, bytes(raw))
    with pytest.raises(rqp.IntegrityError, match="is not job"):
        list(itertools.islice(w.stream(poll=0), 8))


def test_a_stream_times_out_with_one_line(client, world):
    w = client.submit([{"n": 1}], SCRIPT, id="idle")
    world.run(w.id)  # started, never worked
    with pytest.raises(rqp.WaitTimeoutError, match="idle had not ended in time"):
        list(w.stream(timeout=0.05, poll=0.01))


@pytest.mark.timeout(120)
def test_streamed_results_carry_their_leaf_and_are_checked_against_the_root_once_it_exists(
    client, world, proc, operator
):
    """Issue #29 item 4: each streamed result carries the id, key and result digest it came with;
    once the workload has ended, ``verify_streamed`` checks them against the signed root and
    names a record whose value was changed after it was streamed, or forged with its digest."""
    import dataclasses
    import hashlib
    import json

    from rqp.results_root import canonical

    world.settings = dataclasses.replace(world.settings, operator_key_file=operator.path)  # signs the root
    w = client.submit([{"n": i} for i in range(40)], SCRIPT, id="streamed-root")
    run = world.run(w.id)
    stream = w.stream(poll=0)
    run.step()
    world.work(proc)
    first = list(itertools.islice(stream, w.status().done))
    with pytest.raises(rqp.WorkloadError, match="has no results yet"):
        w.root()  # streamed before the root exists
    r = first[0]
    assert r.leaf.id == r["id"] and r.leaf.kind == "result"
    assert r.leaf.digest == hashlib.sha256(canonical(r["result"])).hexdigest()
    world.run_to_end(run, proc)
    streamed = first + list(stream)
    report = w.verify_streamed(streamed, signer=operator.trusted)
    assert report.ok and report.checked == len(streamed) == 40 - len(w.failures())
    assert report.root == w.root()["statement"]["root"]

    # kept elsewhere with their leaf inputs (as JSON), then one value altered there
    kept = [json.loads(json.dumps({**x, "leaf": x.leaf.to_dict()})) for x in streamed]
    assert w.verify_streamed(kept, signer=operator.trusted).ok
    victim = kept[3]
    victim["result"]["sq"] += 1
    with pytest.raises(rqp.IntegrityError, match=f"record {victim['id']} was changed after it was streamed"):
        w.verify_streamed(kept, signer=operator.trusted)
    # the altered value with a digest to match: not what the fleet signed
    victim["leaf"]["digest"] = hashlib.sha256(canonical(victim["result"])).hexdigest()
    with pytest.raises(rqp.IntegrityError, match=f"record {victim['id']} differs from what was signed"):
        w.verify_streamed(kept, signer=operator.trusted)
    # a record dropped from what was kept is named too
    with pytest.raises(rqp.IntegrityError, match=f"record {streamed[5]['id']} is missing from the streamed results"):
        w.verify_streamed(streamed[:5] + streamed[6:], signer=operator.trusted)
