"""Chunks sized by the script's CPU (issue 28 item 4, the 1 ms efficiency row): a chunk's fixed
cost is CPU, and a CPU-bound record's wall time is stretched by whatever else runs on the cores
(1 ms of CPU took ~1.75 ms of wall in the bench), which sized chunks at ~570 records instead of
~1,000. The processors commit the script hosts' CPU (from /proc) beside the wall time; the
scheduler sizes by ``max(cpu, wall / WALL_SHARE)`` -- an I/O-bound script's chunks still hold at
most ``WALL_SHARE`` x the target of wall. Real Redis, real script hosts, real chunks."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rqp import sandbox
from rqp.config import Settings
from rqp.ledger import Ledger
from rqp_scheduler.run.enqueue import WALL_SHARE, chunk_size_for, sizing_seconds

S = Settings.load(env={})

#: a record that burns ``BURN`` s of CPU, then waits ``WAIT`` s (its wall is about twice its CPU,
#: as a CPU-bound record's is on a loaded machine)
BURN, WAIT = 0.008, 0.008
BURN_AND_WAIT = (
    "import time\n"
    "def process(r):\n"
    f"    end = time.process_time() + {BURN}\n"
    "    while time.process_time() < end:\n"
    "        pass\n"
    f"    time.sleep({WAIT})\n"
    "    return r['n']\n"
)
#: an I/O-bound record: it only waits
WAITS = f"import time\ndef process(r):\n    time.sleep({WAIT * 2})\n    return r['n']\n"
N = 4000


def test_a_cpu_bound_record_stretched_by_load_is_sized_by_its_cpu():
    # the bench's 1 ms record under load: 1.75 ms of wall, 1.0 of CPU (+ the host's own)
    wall, cpu = 1.75e-3, 1.01e-3
    assert sizing_seconds(wall, cpu) == cpu
    assert chunk_size_for(sizing_seconds(wall, cpu), S, 2, None, 0) == int(S.chunk_target_seconds / cpu)  # ~990
    assert chunk_size_for(wall, S, 2, None, 0) == 571  # what the wall time gave


@pytest.mark.parametrize(
    ("wall", "cpu", "sized"),
    [
        (1.0e-3, None, 1.0e-3),  # not measured (an older processor, an in-process host): the wall time
        (0.1, 0.0, 0.1 / WALL_SHARE),  # waits only: at most WALL_SHARE x the target of wall a chunk
        (0.1, 0.001, 0.1 / WALL_SHARE),
        (2.0e-3, 1.9e-3, 1.9e-3),  # CPU-bound on a quiet machine: as before, within 5 %
    ],
)
def test_the_sizing_time_is_the_cpu_but_never_under_a_share_of_the_wall(wall, cpu, sized):
    assert sizing_seconds(wall, cpu) == pytest.approx(sized)


def _first_window(world, proc, wid: str, script: str) -> tuple[object, tuple[int, float, int, float]]:
    """Queue the first window of ``wid``, work it, queue the rest: the enqueuer and what it read.
    The workload's script host is started first (a worker's warm host): a cold host's start-up
    (~0.5-1 s here, none of it the records') would be most of the few records' wall time."""
    assert proc.pool.run(wid, script.encode, [b'{"n": -1}'])[0][0] == sandbox.OK
    world.settings = replace(world.settings, window_chunks=0, adaptive_chunks=True, chunk_size=6)
    run = world.run(wid)
    e = run.enqueuer
    e.fill_window()
    assert world.work(proc) > 0
    e.fill_window()  # the first commits are measured: the rest is sized from them
    assert not e.first_window
    return e, Ledger(world.r, wid).sizing_perf()


def test_the_processor_commits_the_script_cpu_and_the_scheduler_sizes_by_it(world, proc):
    wid = world.pack("cpu-bound", [{"n": i} for i in range(N)], BURN_AND_WAIT)
    e, (records, seconds, cpu_records, cpu) = _first_window(world, proc, wid, BURN_AND_WAIT)
    # every chunk's host was measured; its CPU is the burn (+ the host's framing), under the wall
    assert records == cpu_records > 0
    assert BURN * 0.6 < cpu / cpu_records < seconds / records, (records, seconds, cpu)
    wall, per_cpu = seconds / records, cpu / cpu_records
    wall_sized = chunk_size_for(wall, world.settings, 1, None, 0)
    assert e.chunk_size == chunk_size_for(max(per_cpu, wall / WALL_SHARE), world.settings, 1, None, 0)
    # the wall (burn + wait, and more on a loaded machine) is >= 2x the CPU: sized by the wall,
    # chunks held half the records or fewer
    assert e.chunk_size >= 1.4 * wall_sized, (e.chunk_size, wall_sized, wall, per_cpu)


def test_an_io_bound_script_gets_chunks_of_at_most_a_few_targets_of_wall(world, proc):
    wid = world.pack("io-bound", [{"n": i} for i in range(N)], WAITS)
    e, (records, seconds, cpu_records, cpu) = _first_window(world, proc, wid, WAITS)
    wall = seconds / records
    assert records == cpu_records and cpu / cpu_records < wall / WALL_SHARE  # it waits, it does not burn
    assert e.chunk_size == chunk_size_for(wall / WALL_SHARE, world.settings, 1, None, 0)
    assert e.chunk_size * wall <= WALL_SHARE * world.settings.chunk_target_seconds * 1.01


def test_junk_in_the_cpu_fields_sizes_by_the_wall_and_the_next_commit_restarts_them(world, proc):
    """A Redis writer's junk in ``cpu``/``cpu_records`` (trust table: UNPROTECTED) reads as
    unmeasured -- chunk sizes only, within their bounds -- and never fails a commit."""
    wid = world.pack("cpu-junk", [{"n": i} for i in range(N)], BURN_AND_WAIT)
    world.settings = replace(world.settings, window_chunks=0, adaptive_chunks=True, chunk_size=6)
    run = world.run(wid)
    led = Ledger(world.r, wid)
    world.r.hset(led.k.perf, mapping={"cpu": b"\x85junk", "cpu_records": "nan"})
    assert led.sizing_perf() == (0, 0.0, 0, 0.0)
    run.enqueuer.fill_window()
    assert world.work(proc) > 0 and not world.refused  # the commits went through the junk
    records, _seconds, cpu_records, cpu = led.sizing_perf()
    assert 0 < cpu_records <= records and cpu > 0  # restarted from a chunk's own figures
    run.enqueuer.fill_window()
    assert S.chunk_min <= run.enqueuer.chunk_size <= S.chunk_max


def test_the_pool_reports_the_hosts_cpu_and_none_when_a_host_died(world):
    """``ScriptPool.last_cpu``: the CPU the hosts spent on the last batch, from /proc; None when
    a host died mid-batch (its CPU went with it) -- such a chunk adds nothing to the sizing."""
    pool = sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(world.settings), warm=False)
    try:
        out = pool.run("burns", BURN_AND_WAIT.encode, [b'{"n": %d}' % i for i in range(10)])
        assert [kind for kind, _ in out] == [sandbox.OK] * 10
        assert pool.last_cpu is not None and BURN * 10 * 0.5 < pool.last_cpu < 1.0
        dies = "import os\ndef process(r):\n    if r['n'] == 3:\n        os._exit(3)\n    return r['n']\n"
        out = pool.run("dies", dies.encode, [b'{"n": %d}' % i for i in range(6)])
        assert out[3][0] == sandbox.CRASHED and pool.last_cpu is None
    finally:
        pool.close()
