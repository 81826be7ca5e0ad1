"""What a person sees of a workload's progress (issue #24 items 9 and 12): ``make demo``'s
progress redrawn in place at the terminal's width, and a percentage and an ETA while the data is
still being read. A terminal model (``tests/screen.py``) replays what was written."""

from __future__ import annotations

import io
import time

import pytest
from screen import Screen

from rqp.cli import format_progress, format_status
from rqp.ledger import Meta, Perf
from rqp.status import Progress, progress_of

demo = pytest.importorskip("demo")  # examples/ is on the tests' path (tests/conftest.py)

MB = 1_000_000


def progress(**kw: object) -> Progress:
    now = time.time()
    base: dict[str, object] = dict(
        workload="demo", state="running", total=None, enqueued=0, done=0, failed=0, processing=0, retrying=0,
        started_at=now - 10, finished_at=None, processed_seconds=1.0, processed=0, first_at=now - 9, last_at=now,
        data_bytes=10 * MB,
    )  # fmt: skip
    return Progress(**{**base, **kw})  # type: ignore[arg-type]


def a_run() -> list[Progress]:
    """What ``read_progress`` returns through a run of the demo: the data read in steps, then the
    processors catching up, then done."""
    steps = [progress(read_bytes=0, enqueued=0)]
    for i in range(1, 10):
        steps.append(
            progress(read_bytes=i * MB, enqueued=1000 * i, done=900 * i, processed=900 * i, processing=100, failed=i)
        )
    for done in (9_500, 9_990):
        steps.append(progress(total=10_000, enqueued=10_000, done=done, processed=done, failed=10, processing=10))
    steps.append(
        progress(state="done", total=10_000, enqueued=10_000, done=9_990, failed=10, processed=10_000, finished_at=time.time())
    )  # fmt: skip
    return steps


@pytest.mark.parametrize("columns", [80, 100])
def test_the_demo_redraws_its_progress_in_place_at_the_terminals_width(columns, monkeypatch):
    """Item 9: on a terminal 80 or 100 columns wide, the demo's progress never reaches the last
    column (where the terminal wraps, and the next redraw leaves the wrapped part behind), and
    the screen ends with exactly one status block: the final one, no copy of an earlier bar."""
    monkeypatch.setenv("COLUMNS", str(columns))
    out = io.StringIO()
    display = demo.ProgressDisplay(out, tty=True)
    run = a_run()
    for p in run[:-1]:
        display.show(p)
    display.end(run[-1])
    screen = Screen(columns)
    screen.feed(out.getvalue().replace("\n", "\r\n"))  # as a terminal's line discipline passes it on (onlcr)
    assert screen.wrapped == 0, out.getvalue()
    final = screen.text()
    assert final == format_status(run[-1], columns - 1), final
    assert sum("[done]" in line for line in final) == 1
    assert not any("[running]" in line or "reading" in line for line in final), final


def test_into_a_pipe_the_demo_prints_a_line_when_the_progress_changed():
    out = io.StringIO()
    display = demo.ProgressDisplay(out, tty=False)
    run = a_run()
    display.show(run[1])
    display.show(run[1])  # unchanged (and within the interval): nothing new
    display.end(run[-1])
    lines = out.getvalue().splitlines()
    assert lines == [format_progress(run[1]), format_progress(run[-1])], lines
    assert "\x1b" not in out.getvalue()


def test_while_the_data_is_read_progress_has_a_percentage_the_sizes_and_an_eta():
    """Item 12: the scheduler publishes the bytes it has read of the data's size; progress shows
    how far the reading got and an ETA, on one line and in ``rqp status``'s block, at 80
    columns."""
    p = progress(read_bytes=4_300_000, enqueued=4_300, done=3_900, processed=3_900, processing=256)
    assert p.read_fraction == pytest.approx(0.43)
    assert p.eta is not None and p.eta > 0
    block = format_status(p, 79)
    assert block[0] == "demo  [running]  reading the data: 43.0% (4.3/10.0 MB)", block
    assert "3,900 done of 4,300 read" in block[1]
    assert all(len(line) <= 79 for line in block)
    assert "ETA --:--" not in " ".join(block) and "ETA " in block[-1]
    line = format_progress(p, 79)
    assert line.startswith("demo  [running]  reading the data: 43.0% (4.3/10.0 MB)") and "ETA 0:" in line, line
    assert len(line) <= 79


def test_the_eta_while_reading_is_never_before_the_reading_can_end():
    """Processors faster than the reading: the ETA is at least the rest of the reading at its
    pace so far (10 s for 40%: 15 s to go), not the records read so far at the processors' rate."""
    now = time.time()
    p = progress(
        started_at=now - 10, read_bytes=4 * MB, enqueued=4_000, done=4_000, processed=4_000, first_at=now - 9.9, last_at=now
    )  # fmt: skip
    assert p.eta == pytest.approx(15, rel=0.05)


def snapshot(meta: dict[str, str], perf: dict[str, str] | None = None) -> dict[str, object]:
    base = {Meta.STATE: "running", Meta.ENQUEUED: "300", Meta.STARTED_AT: str(time.time() - 5)}
    return {
        "meta": {**base, **meta}, "done": 290, "failed": 0, "processing": 0, "retrying": 0, "perf": perf or {},
    }  # fmt: skip


@pytest.mark.parametrize(
    "read, size",
    [("x", "1000"), ("500", "x"), ("nan", "1000"), ("500", "inf"), ("1e999", "1000"), ("-5", "1000"),
     ("500", "0"), ("500", "-1000"), ("\udcff", "1000"), ("", "")],
)  # fmt: skip
def test_junk_a_redis_writer_puts_in_the_bytes_read_reads_as_unknown(read, size):
    """Security III: ``read_bytes`` and ``data_bytes`` are plain fields a Redis writer can set;
    junk reads as unknown -- the records-read line, no percentage, no crash."""
    p = progress_of("w1", snapshot({Meta.READ_BYTES: read, Meta.DATA_BYTES: size}))  # type: ignore[arg-type]
    assert p is not None and p.read_fraction is None
    text = "\n".join(format_status(p, 79))
    assert "reading data: 300 records so far" in text and "%" not in text, text


def test_bytes_read_past_the_size_show_at_most_all_of_it():
    p = progress_of("w1", snapshot({Meta.READ_BYTES: "5000", Meta.DATA_BYTES: "1000"}))  # type: ignore[arg-type]
    assert p is not None and p.read_fraction == 1.0
    assert "reading the data: 100.0% (1.0/1.0 kB)" in format_status(p, 79)[0]


@pytest.mark.parametrize("first, last", [("nan", "10"), ("0", "inf"), ("x", "10"), ("10", "5"), ("1e999", "1e999")])
def test_junk_in_the_perf_hash_makes_no_rate_not_a_crash(first, last):
    p = progress_of("w1", snapshot({}, {Perf.RECORDS: "100", "first": first, Perf.LAST: last}))  # type: ignore[arg-type]
    assert p is not None and p.rate == 0.0
    assert "0 rec/s" in " ".join(format_status(p, 79))
