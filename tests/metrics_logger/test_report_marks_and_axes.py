"""``rqp metrics report`` (issue #24 item 15): a quiet network's axis reads distinct ticks, the
workloads rqp recorded in Redis are marked without ``--mark``, and the PNGs draw a view of one
chart. Samples are stored and read by the logger's own code; Redis is a real server."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from rqp.ledger import WORKLOADS, WorkloadKeys
from rqp_metrics.cli import main
from rqp_metrics.sample import CPU_PERCENT, NET_IN_BYTES, NET_OUT_BYTES, Sample
from rqp_metrics.series import Chart, Series, VmView, build_views
from rqp_metrics.spool import Spool
from rqp_metrics.svg import render_chart


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("RQP_"):
            monkeypatch.delenv(k)


def network_samples(now: datetime, bytes_per_second: float, minutes: int = 10) -> list[Sample]:
    out = []
    for i in range(minutes):
        ts = now - timedelta(minutes=minutes - i)
        out.append(Sample(ts, "quiet-vm", "host", CPU_PERCENT, 5.0 + i, "Percent", 60.0))
        out.append(
            Sample(ts, "quiet-vm", "host", NET_IN_BYTES, bytes_per_second * 60 * (1 + i % 3 / 10), "Bytes", 60.0)
        )
        out.append(Sample(ts, "quiet-vm", "host", NET_OUT_BYTES, bytes_per_second * 30, "Bytes", 60.0))
    return out


def y_labels(svg: str) -> list[str]:
    return re.findall(r'class="ylab">([^<]+)</text>', svg)


@pytest.mark.parametrize("rate", [1.3, 700.0, 5_000.0, 1.3 * 2**20])
def test_a_network_axis_reads_distinct_ticks(rate):
    now = datetime.now(UTC)
    (view,) = build_views(network_samples(now, rate))
    net = next(c for c in view.charts if c.unit == "B/s" and c.key.startswith("net"))
    labels = y_labels(render_chart(net, now - timedelta(minutes=10), now, []))
    assert len(labels) >= 3 and len(set(labels)) == len(labels), labels  # never "1 B/s, 1 B/s, 0 B/s"
    assert all(re.fullmatch(r"\d+(\.\d+)? (B|KiB|MiB|GiB)/s", x) for x in labels), labels
    assert len({x.split(" ")[1] for x in labels}) == 1, labels  # one unit per axis
    ys = [
        float(y)
        for y in re.findall(r'<polyline points="([^"]+)"', render_chart(net, now - timedelta(minutes=10), now, []))[0]
        .replace(" ", ",")
        .split(",")[1::2]
    ]
    assert min(ys) >= 26 - 0.05  # the data fits under the top tick (the plot starts at y=26)


def test_the_labeler_uses_the_decimals_of_its_step():
    from rqp_metrics.fmt import axis_labeler

    label = axis_labeler(1024.0, 256.0, "B/s")
    assert [label(v) for v in (0, 256, 512, 768, 1024)] == [
        "0.00 KiB/s",
        "0.25 KiB/s",
        "0.50 KiB/s",
        "0.75 KiB/s",
        "1.00 KiB/s",
    ]
    assert axis_labeler(100, 25, "%")(75) == "75%"


def write(sample_store, samples):
    spool = Spool(sample_store)
    spool.add(samples)
    spool.flush()


def test_the_report_marks_the_workloads_redis_recorded(
    sample_store, blob_store, tmp_path, r, redis_url, monkeypatch, capsys
):
    now = datetime.now(UTC)
    write(sample_store, network_samples(now, 5_000.0))
    t = time.time()
    for wid, started, finished in (
        ("w-auto", t - 300, t - 120),
        ("w-running", t - 60, None),
        ("w-old", t - 3 * 3600, t - 3 * 3600 + 60),
    ):
        meta = {"state": "done" if finished else "running", "started_at": started}
        if finished:
            meta["finished_at"] = finished
        r.hset(WorkloadKeys(wid).meta, mapping=meta)
        r.zadd(WORKLOADS, {wid: started})
    monkeypatch.setenv("RQP_REDIS_URL", redis_url)
    monkeypatch.setenv("RQP_ALLOW_INSECURE_REDIS", "true")
    html = tmp_path / "report.html"
    assert main(["report", "--since", "15m", "--blob-url", blob_store.location, "--html", str(html)]) == 0
    out = capsys.readouterr().out
    page = html.read_text()
    charts = page.count("<svg")
    assert page.count('class="mark mark-start" stroke="#2e7d32" data-mark="w-auto"') == charts
    assert page.count('class="mark mark-end" stroke="#c62828" data-mark="w-auto"') == charts
    assert page.count('class="mark mark-start" stroke="#2e7d32" data-mark="w-running"') == charts
    assert 'data-mark="w-old"' not in page  # it ran before the window
    assert "workload w-auto: start" in out and "workload w-running: start" in out and "finish running" in out
    assert "not marked" not in out

    # --no-redis-marks: none; a Redis that does not answer: one line saying so, the report still written
    assert (
        main(["report", "--since", "15m", "--blob-url", blob_store.location, "--html", str(html), "--no-redis-marks"])
        == 0
    )
    assert "data-mark=" not in html.read_text()
    monkeypatch.setenv("RQP_REDIS_URL", "redis://127.0.0.1:1/0")
    capsys.readouterr()
    assert main(["report", "--since", "15m", "--blob-url", blob_store.location, "--html", str(html)]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "not marked" in line]
    assert len(notes) == 1 and "cannot reach Redis at redis://127.0.0.1:1/0" in notes[0] and "--mark" in notes[0], out
    assert "data-mark=" not in html.read_text() and f"wrote {html}" in out


def test_pngs_draw_a_view_of_one_chart(tmp_path):
    """A view of a single chart (matplotlib hands back one Axes, not a list of them, unless asked)."""
    pytest.importorskip("matplotlib", reason="the [png] extra; requirements-dev.txt installs it")
    from rqp_metrics.png import render_pngs

    now = datetime.now(UTC)
    points = [(now - timedelta(minutes=5 - i), 1.0 + i % 2) for i in range(5)]
    view = VmView("one-chart-vm", ["host"], [Chart("net", "Network", "B/s", [Series("in", points)], None)], [])
    (path,) = render_pngs([view], [], tmp_path / "png", points[0][0], points[-1][0])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
    (full,) = build_views(network_samples(now, 700.0))
    assert len(render_pngs([full], [], tmp_path / "png", now - timedelta(minutes=10), now)) == 1
