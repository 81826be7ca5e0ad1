"""The records' input digests come from the enqueue (``rqp_scheduler.input_pieces``): the data is
not read a second time for the results root when this run's pieces cover every record, and the
leaves are the same as from the data read again in every other case (a restart, a piece changed
or deleted by a blob writer, a piece tagged by someone other than this run)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from rqp.results_root import INPUTS_BLOB, input_digest, input_key
from rqp.summary import read_summary
from rqp.workload import Workload, blob_name
from rqp_scheduler.consolidate import _payloads
from rqp_scheduler.input_pieces import PIECES_DIR, InputPieces, Piece, PieceRejected

from .conftest import FAILS_ON_FIVE

N = 30


def _expected_inputs(workload: Workload) -> bytes:
    """inputs.bin as the root's pass over the data itself makes it."""
    k = input_key(workload.key, workload.id)
    return b"".join(input_digest(k, rid, p) for rid, p in enumerate(_payloads(workload, None)))


def _pieces(world, wid: str) -> list[str]:
    return sorted(world.store.list(blob_name(wid, PIECES_DIR)))


@pytest.fixture
def data_reads(monkeypatch):
    """How many times the workload's data is read (counted, not changed)."""
    calls: list[int] = []
    real = Workload.data_chunks

    def counted(self, *args, **kwargs):
        chunks = real(self, *args, **kwargs)

        def read():
            calls.append(1)  # counted once its first piece is asked for: read, not merely set up
            yield from chunks

        return read()

    monkeypatch.setattr(Workload, "data_chunks", counted)
    return calls


def test_the_root_takes_the_enqueues_digests_and_does_not_read_the_data_again(world, proc, data_reads):
    world.settings = replace(world.settings, window_chunks=100, max_attempts=1)
    wid = world.pack("pieces", [{"n": i} for i in range(N)], script=FAILS_ON_FIVE)
    run = world.run(wid)
    run.enqueuer.fill_window()
    world.work(proc)
    reads = len(data_reads)
    run.finisher.finish()
    assert len(data_reads) == reads  # the data was read once, by the enqueue
    assert world.store.get(blob_name(wid, INPUTS_BLOB)) == _expected_inputs(run.workload)
    assert read_summary(world.store, run.workload).done == N - 1
    assert _pieces(world, wid) == []  # scratch: deleted with the summary


def test_a_restarted_scheduler_reads_the_data_again_and_ends_with_the_same_inputs(world, proc, caplog):
    wid = world.pack("restarted", [{"n": i} for i in range(N)])
    first = world.run(wid)
    first.enqueuer.fill_window()  # 3 chunks of 4: records 0-11, under the first run's key
    first.lock.release()  # the scheduler is gone
    world.settings = replace(world.settings, window_chunks=100)
    second = world.run(wid)
    with caplog.at_level(logging.INFO, logger="rqp.scheduler"):
        world.run_to_end(second, proc)
    assert "this run's input digests do not cover every record" in caplog.text
    assert world.store.get(blob_name(wid, INPUTS_BLOB)) == _expected_inputs(second.workload)
    assert _pieces(world, wid) == []  # the first run's pieces too


@pytest.mark.parametrize("harm", ["changed", "deleted", "forged-with-another-key"])
def test_a_piece_a_blob_writer_touched_is_not_used_and_the_inputs_are_the_same(world, proc, caplog, harm):
    world.settings = replace(world.settings, window_chunks=100)
    wid = world.pack(f"harm-{harm}", [{"n": i} for i in range(N)])
    run = world.run(wid)
    run.enqueuer.fill_window()
    world.work(proc)
    run.ctx.inputs.flush()  # what the enqueue holds stored (as consolidation does first)
    name = _pieces(world, wid)[0]
    blob = world.store.get(name)
    if harm == "changed":  # one digest altered: record 0's leaf would claim another input
        world.store.put(name, bytes([blob[0] ^ 1]) + blob[1:])
    elif harm == "deleted":
        world.store.delete(name)
    else:  # a processor holds the data key, never this run's piece key
        other = InputPieces(world.store, run.workload)
        other._run = run.ctx.inputs._run  # its name, another key's tag
        first, count = (int(x) for x in name.rsplit("/", 1)[1].removesuffix(".bin").split("-"))
        other.write(first, bytes(32) * count)
    with caplog.at_level(logging.WARNING, logger="rqp.scheduler"):
        world.run_to_end(run, proc)
    assert world.store.get(blob_name(wid, INPUTS_BLOB)) == _expected_inputs(run.workload)
    if harm != "deleted":
        assert "are not as this run wrote them; the results root reads the data again" in caplog.text


def test_the_plan_needs_every_record_covered_and_takes_overlaps_once(world):
    wid = world.pack("plan", [{"n": i} for i in range(4)])
    pieces = InputPieces(world.store, Workload.open(world.store, world.keys, wid, world.trust()))
    macs = [bytes([i]) * 32 for i in range(10)]
    pieces.write(0, b"".join(macs[0:4]))
    pieces.write(4, b"".join(macs[4:6]))  # a transaction whose cursor never moved ...
    pieces.write(4, b"".join(macs[4:8]))  # ... read again from the same cursor, longer
    assert pieces.plan(9) is None  # record 8 not covered
    pieces.write(6, b"".join(macs[6:10]))
    plan = pieces.plan(9)
    assert plan is not None
    assert [(p.first, p.count, p.skip) for p in plan] == [(0, 4, 0), (4, 4, 0), (6, 4, 2)]
    assert b"".join(pieces.read(plan, 9)) == b"".join(macs[:9])
    gap = [Piece(plan[0].name, 0, 4), Piece(plan[0].name, 4, 4)]  # a piece under another's name
    with pytest.raises(PieceRejected, match="not as this run wrote them"):
        b"".join(pieces.read(gap, 8))


PARSED = (
    "def parse(stream):\n    for part in stream.read().decode().split(';'):\n"
    "        k, v = part.split('=')\n        yield {'k': k, 'v': int(v)}\n\n"
    "def process(r):\n    return r['k'] * r['v']\n"
)


def test_a_script_parsed_workload_takes_the_enqueues_digests_and_runs_no_parse_at_the_end(world, proc, data_reads):
    from rqp.workload import pack

    data = world.root / "s.txt"
    data.write_bytes(b";".join(b"k%d=%d" % (i, i) for i in range(N)))
    (world.root / "parsed.py").write_text(PARSED)
    pack(world.store, world.keys, "parsed", data, world.root / "parsed.py", fmt="script", signer=world.signer.key)
    world.settings = replace(world.settings, window_chunks=100)
    run = world.run("parsed")
    run.enqueuer.fill_window()
    world.work(proc)
    reads = len(data_reads)
    run.finisher.finish()
    assert len(data_reads) == reads  # parse() did not run again for the digests
    w = run.workload
    k = input_key(w.key, w.id)
    parsed = run.finisher._script_records()  # the fallback's records: parse() run again in a host
    try:
        expected = b"".join(input_digest(k, rid, p) for rid, (p, _why) in enumerate(parsed))
    finally:
        parsed.close()
    assert len(expected) == 32 * N
    assert world.store.get(blob_name("parsed", INPUTS_BLOB)) == expected


def test_the_enqueues_digests_are_kept_to_full_pieces_and_the_rest_stored_before_the_root(world, monkeypatch):
    """Digests go out in pieces of ``PIECE_RECORDS`` (few blob requests), what is held is stored
    before the root reads them, and an enqueue that went back to an earlier cursor stores what it
    held as it is (still right for its records) before holding the records read again."""
    from rqp_scheduler import input_pieces

    monkeypatch.setattr(input_pieces, "PIECE_RECORDS", 4)
    wid = world.pack("held", [{"n": i} for i in range(4)])
    pieces = InputPieces(world.store, Workload.open(world.store, world.keys, wid, world.trust()))
    macs = [bytes([i]) * 32 for i in range(10)]
    assert pieces.add(0, b"".join(macs[0:3])) is None  # 3 held
    full = pieces.add(3, b"".join(macs[3:6]))  # 6 held: a piece of 6 due
    assert full == (0, b"".join(macs[0:6]))
    pieces.write(*full)
    assert pieces.add(6, macs[6]) is None
    back = pieces.add(5, b"".join(macs[5:7]))  # the cursor went back to record 5
    assert back == (6, macs[6])
    pieces.write(*back)
    assert _pieces(world, wid) and pieces.plan(7) is not None  # 0-5, 6, then 5-6 once stored
    plan = pieces.plan(7)
    assert b"".join(pieces.read(plan, 7)) == b"".join(macs[:7])
