"""One throughput figure for one run (issue #24 items 12 and 29), and the bytes read published
while the data is read (item 12), on a real Redis with the in-process scheduler and processor."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
from world import cli_env, proc, world  # noqa: F401 - fixtures

from rqp.cli import format_status
from rqp.cli import main as rqp_main
from rqp.ledger import Meta, Perf
from rqp.status import read_progress, verified_progress
from rqp.summary import read_summary
from rqp.workload import pack
from rqp_console.throughput import ThroughputHistory
from rqp_console.workloads import progress_row

FAILS_SOME = "def process(r):\n    if r['n'] % 10 == 3:\n        raise ValueError('three')\n    return r['n']\n"


def perf_of(r, wid: str) -> dict[str, float]:
    return {k.decode(): float(v) for k, v in r.hgetall(f"rqp:w:{wid}:perf").items()}


def test_status_the_console_the_log_and_the_summary_give_one_figure(world, proc, cli_env, capsys, caplog):  # noqa: F811
    """Item 29: ``rqp status`` (text and JSON, the figure ``--watch`` ends with), the console
    (with the KEK and without), the scheduler's log line and the sealed summary say the same
    records/s for one run: ``rqp.throughput``'s, from the perf hash."""
    caplog.set_level(logging.INFO, logger="rqp.scheduler")
    wid = world.pack("one-figure", [{"n": i} for i in range(40)], FAILS_SOME)
    run = world.run(wid)
    world.run_to_end(run, proc)
    summary = read_summary(world.store, run.workload)
    perf = perf_of(world.r, wid)
    figure = round(perf[Perf.RECORDS] / (perf[Perf.LAST] - perf["first"]), 1)
    assert figure > 0 and summary.records_per_second == figure

    plain = read_progress(world.r, wid)
    assert plain is not None and round(plain.rate, 1) == figure
    assert verified_progress(plain, lambda: summary).rate == figure

    row = progress_row(world.r, wid, ThroughputHistory(), summaries=lambda _w: summary)
    assert row is not None and row["rate"] == row["average_rate"] == figure
    unverified = progress_row(world.r, wid, ThroughputHistory())
    assert unverified is not None and unverified["average_rate"] == figure

    (logged,) = [rec.getMessage() for rec in caplog.records if "records/s" in rec.getMessage()]
    assert logged.endswith(f"({figure:.0f} records/s)"), logged

    capsys.readouterr()
    rqp_main(["status", wid, "--json"])
    assert json.loads(capsys.readouterr().out)["rate"] == figure
    rqp_main(["status", wid])
    assert f"{figure:,.0f} rec/s" in capsys.readouterr().out


def test_after_a_retry_the_rate_is_of_the_new_run_not_of_the_time_between(world, proc, cli_env, capsys):  # noqa: F811
    """Item 12: a workload whose first run ended an hour ago is retried; its records/s is that
    of the retry's run, not its records over the hour between the runs (1,259/s shown as 224/s)."""
    wid = world.pack("retried-later", [{"n": i} for i in range(20)], FAILS_SOME)
    world.run_to_end(world.run(wid), proc)
    first_run = perf_of(world.r, wid)
    world.r.hset(  # the first run happened an hour ago
        f"rqp:w:{wid}:perf", mapping={"first": first_run["first"] - 3600, Perf.LAST: first_run[Perf.LAST] - 3600}
    )
    retried_at = time.time()
    assert rqp_main(["retry", wid, "--failed"]) == 0
    run = world.run(wid)
    world.run_to_end(run, proc)
    perf = perf_of(world.r, wid)
    assert perf["first"] >= retried_at - 1, "the retry's run kept the first run's start"
    assert perf[Perf.RECORDS] == 4  # records 3 and 13, two attempts each: this run's only
    p = read_progress(world.r, wid)
    assert p is not None and p.rate == pytest.approx(4 / (perf[Perf.LAST] - perf["first"]))
    assert p.rate > 1  # over the hour between the runs it would be (20 + 4) / 3600
    assert read_summary(world.store, run.workload).records_per_second == round(p.rate, 1)


def test_while_the_data_is_read_status_shows_how_much_of_it(world, proc, cli_env, capsys):  # noqa: F811
    """Item 12: the scheduler publishes the plain bytes it has read and the data's size (the
    signed manifest's); ``rqp status`` shows the percentage read, the sizes and an ETA while the
    total is unknown, and the records' percentage once it is known."""
    wid = "read-slowly"
    data = world.root / f"{wid}.jsonl"
    data.write_text("".join(json.dumps({"n": i, "pad": "x" * 40}) + "\n" for i in range(200)))
    (world.root / f"{wid}.py").write_text("def process(r):\n    return r['n']\n")
    pack(world.store, world.keys, wid, data, world.root / f"{wid}.py", signer=world.signer.key, segment_size=512)
    size = data.stat().st_size
    run = world.run(wid)
    run.step()  # one window: 3 chunks of 4 records
    meta = {k.decode(): v.decode() for k, v in world.r.hgetall(f"rqp:w:{wid}:meta").items()}
    assert int(meta[Meta.DATA_BYTES]) == size
    assert 0 < int(meta[Meta.READ_BYTES]) < size
    world.work(proc)
    run.step()
    p = read_progress(world.r, wid)
    assert p is not None and p.reading and p.read_fraction is not None and 0 < p.read_fraction < 1
    capsys.readouterr()
    rqp_main(["status", wid])
    out = capsys.readouterr().out
    assert re.search(rf"\[running\]  reading the data: \d+\.\d% \(\d+\.\d/{size / 1000:.1f} kB\)", out), out
    assert re.search(r"ETA \d+:\d\d", out), out
    world.run_to_end(run, proc, steps=400)
    done = read_progress(world.r, wid)
    assert done is not None and not done.reading and done.read_fraction is None
    assert format_status(done, 79)[0].startswith(f"{wid}  [done]  100.0%")
