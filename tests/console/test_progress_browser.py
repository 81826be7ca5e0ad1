"""The console's progress text in a real browser (headless Chromium), issue #24 items 12 and 29:
while the data is read, how much of it (a percentage of its bytes) and an ETA; and the one
throughput figure -- the records/s ``rqp status`` gives for the same Redis state, not the
records over the whole time since the workload started."""

from __future__ import annotations

import time

import pytest

from rqp.cli import format_progress
from rqp.ledger import Ledger
from rqp.status import read_progress

from .browser import start_chrome, wait_for
from .test_browser import log_in, submit_login, text


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = start_chrome(tmp_path_factory.mktemp("chrome"))
    yield b
    b.quit()


def put_workload(r, wid: str, meta: dict[str, object], done: int, perf: dict[str, float]) -> None:
    k = Ledger(r, wid).k
    r.hset(k.meta, mapping=meta)
    r.hset(k.n, mapping={"done": done, "failed": 0, "processing": 0})
    r.hset(k.perf, mapping=perf)
    r.zadd("rqp:workloads", {wid: float(meta["started_at"])})


def test_the_console_shows_how_much_data_is_read_and_rqp_status_records_per_second(browser, consoles, redis_url, r):
    b = browser
    now = time.time()
    put_workload(
        r, "reading", {"state": "running", "started_at": now - 10, "enqueued": 4_300, "read_bytes": 4_300_000,
                       "data_bytes": 10_000_000}, 3_900, {"records": 3_900, "first": now - 9, "last": now - 1},
    )  # fmt: skip
    # a run that processed 30,530 records in 10 s, within a minute from start to end: 3,053/s, not 500/s
    put_workload(
        r, "ended", {"state": "done", "started_at": now - 60, "finished_at": now, "enqueued": 30_000, "total": 30_000},
        30_000, {"records": 30_530, "first": now - 50, "last": now - 40},
    )  # fmt: skip
    ended = read_progress(r, "ended")
    assert ended is not None and "3,053 rec/s" in format_progress(ended)
    console = consoles(redis_url)
    log_in(b, console.url, "/workloads")
    submit_login(b)
    row = wait_for(b, lambda: text(b, 'tr[data-id="reading"]'), what="the reading workload's row")
    assert "reading the data: 43.0% (4.1 MiB of 9.5 MiB)" in row, row
    ended_row = wait_for(b, lambda: text(b, 'tr[data-id="ended"] td.rate'), what="the ended workload's rate")
    assert ended_row.startswith("3,053"), ended_row

    b.get(console.url + "/workloads/reading")
    bar = wait_for(b, lambda: "reading the data" in text(b, "#bar-text") and text(b, "#bar-text"), what="the bar")
    assert "reading the data: 43.0% (4.1 MiB of 9.5 MiB)" in bar and "3,900 of 4,300 records read finished" in bar
    eta = text(b, "#t-eta .v")
    assert eta not in ("", "–"), f"no ETA while the data is read: {eta!r}"

    b.get(console.url + "/workloads/ended")
    tile = wait_for(b, lambda: text(b, "#state") == "done" and text(b, "#t-rate .v"), what="the rate tile")
    assert tile == "3,053", tile
