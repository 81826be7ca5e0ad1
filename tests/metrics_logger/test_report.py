"""The report renders from stored samples; the tests open the files it writes."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta
from statistics import mean

import pytest

from rqp_metrics import png
from rqp_metrics.cli import main
from rqp_metrics.fmt import human_bytes
from rqp_metrics.logger import MetricsLogger
from rqp_metrics.marks import collect_marks, parse_mark_arg
from rqp_metrics.report import add_report_command, parse_since, run_report
from rqp_metrics.sample import CPU_PERCENT, NET_IN_BYTES, Sample
from rqp_metrics.series import build_views
from rqp_metrics.spool import Spool
from rqp_metrics.svg import render_chart

from .stub_azure import minute_values

EXTERNAL = re.compile(r"<script|<link|\bsrc=|https?://|@import", re.I)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _stub_totals(stub, vm: str, minutes: list[datetime]) -> dict[str, float]:
    idx = stub.vms.index(vm)
    return {
        "cpu": [minute_values(idx, "Percentage CPU", t)["average"] for t in minutes],
        "net_in": sum(minute_values(idx, "Network In Total", t)["total"] for t in minutes),
        "net_out": sum(minute_values(idx, "Network Out Total", t)["total"] for t in minutes),
        "disk_read": sum(minute_values(idx, "Disk Read Bytes", t)["total"] for t in minutes),
        "disk_write": sum(minute_values(idx, "Disk Write Bytes", t)["total"] for t in minutes),
    }


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("RQP_"):
            monkeypatch.delenv(k)


def test_report_from_samples_the_azure_path_stored(stub, azure_source, sample_store, blob_store, tmp_path, now, capsys):
    stub.gone.add("vm-c")  # a warning to show
    logger = MetricsLogger([azure_source(lookback=600)], Spool(sample_store))
    assert logger.run_once().flush.stored > 0

    minutes = [(now - timedelta(minutes=10)).replace(second=0) + timedelta(minutes=i) for i in range(1, 10)]
    start, end = minutes[2] + timedelta(seconds=10), minutes[6] + timedelta(seconds=20)
    html = tmp_path / "out" / "report.html"
    marks_file = tmp_path / "marks.json"
    marks_file.write_text(json.dumps([{"name": "w-file", "started": _iso(minutes[1]), "finished": None}]))
    code = main(
        [
            "report",
            "--since",
            "1h",
            "--blob-url",
            blob_store.location,
            "--html",
            str(html),
            "--mark",
            f"w-1={_iso(start)},{_iso(end)}",
            "--workload-marks",
            str(marks_file),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    page = html.read_text()

    # one <svg> per chart: CPU, network, disk for each VM (vm-c only has its warning)
    assert page.count("<svg") == 9
    for vm in ("vm-a", "vm-b", "vm-c"):
        assert f"<h2>{vm}</h2>" in page
        for chart in ("CPU (%)", "Network (B/s)", "Disk (B/s)"):
            assert f'aria-label="{vm} · {chart}"' in page
    assert "VM vm-c not found (404" in page
    assert page.count('class="mark mark-start" stroke="#2e7d32" data-mark="w-1"') == 9
    assert page.count('class="mark mark-end" stroke="#c62828" data-mark="w-1"') == 9
    assert page.count('data-mark="w-file"') == 9 and "w-file start" in page and "running" in page
    assert not EXTERNAL.search(page), EXTERNAL.search(page)

    # vm-a's CPU line has one vertex per stored minute
    cpu_a = re.search(r'aria-label="vm-a · CPU \(%\)".*?<polyline points="([^"]+)"', page, re.S)
    assert cpu_a and len(cpu_a.group(1).split()) == len(minutes)

    # the summary numbers, computed from the stub's data
    for vm in ("vm-a", "vm-b"):
        t = _stub_totals(stub, vm, minutes)
        cells = [
            vm,
            "azure",
            str(7 * len(minutes)),
            f"{mean(t['cpu']):.1f}",
            f"{max(t['cpu']):.1f}",
            human_bytes(t["net_in"]),
            human_bytes(t["net_out"]),
            human_bytes(t["disk_read"]),
            human_bytes(t["disk_write"]),
            "0",
        ]
        assert f'<tr data-vm="{vm}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" in page
        assert re.search(r"^" + r"\s+".join(re.escape(c) for c in cells) + r"$", out, re.M), out
    assert re.search(r"^vm-c\s+azure\s+0\s+-\s+-\s+0 B\s+0 B\s+0 B\s+0 B\s+1$", out, re.M), out
    assert f"wrote {html}" in out
    assert f"workload w-1: start {start:%Y-%m-%d %H:%M:%S} UTC, finish {end:%Y-%m-%d %H:%M:%S} UTC" in out


def test_run_report_works_when_registered_in_another_cli(sample_store, blob_store, tmp_path, capsys):
    """How the shared `rqp` CLI wires it: `rqp metrics report ...` → add_report_command + args.func."""
    now = datetime.now(UTC)
    samples = [
        Sample(now - timedelta(minutes=i), "proc-1", "host", CPU_PERCENT, 50.0 + i, "Percent", 60.0) for i in range(5)
    ]
    spool = Spool(sample_store)
    spool.add(samples)
    spool.flush()
    rqp = argparse.ArgumentParser(prog="rqp")
    rqp.add_argument("--config")
    top = rqp.add_subparsers(dest="command")
    metrics = top.add_parser("metrics").add_subparsers(dest="metrics_command")
    add_report_command(metrics)
    args = rqp.parse_args(
        ["metrics", "report", "--since", "30m", "--blob-url", blob_store.location, "--html", str(tmp_path / "r.html")]
    )
    assert args.func is run_report
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"^proc-1\s+host\s+5\s+52\.0\s+54\.0\s", out, re.M), out
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") == 3 and "proc-1" in page


def test_rqp_metrics_report_in_the_shared_cli(sample_store, blob_store, tmp_path, capsys):
    from rqp.cli import main as rqp_main

    spool = Spool(sample_store)
    spool.add(
        [
            Sample(
                datetime.now(UTC) - timedelta(minutes=1),
                "shared-cli-vm",
                "host",
                CPU_PERCENT,
                42.0,
                "Percent",
                60.0,
            )
        ]
    )
    spool.flush()
    code = rqp_main(
        ["metrics", "report", "--since", "10m", "--blob-url", blob_store.location, "--html", str(tmp_path / "s.html")]
    )
    assert code == 0
    assert re.search(r"^shared-cli-vm\s+host\s+1\s+42\.0\s+42\.0\s", capsys.readouterr().out, re.M)
    assert "shared-cli-vm" in (tmp_path / "s.html").read_text()


def test_empty_window_is_a_one_line_error(blob_store, tmp_path, capsys):
    code = main(["report", "--since", "2h", "--blob-url", blob_store.location, "--html", str(tmp_path / "x.html")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "no metrics samples between" in err[0] and "RQP_BLOB_URL" in err[0]
    assert not (tmp_path / "x.html").exists()


def test_png_without_matplotlib_says_how_to_get_it(sample_store, blob_store, tmp_path, monkeypatch, capsys):
    spool = Spool(sample_store)
    spool.add([Sample(datetime.now(UTC), "vm", "host", CPU_PERCENT, 1.0, "Percent", 60.0)])
    spool.flush()
    monkeypatch.setattr(png, "matplotlib_available", lambda: False)
    code = main(["report", "--blob-url", blob_store.location, "--no-html", "--png", str(tmp_path / "png")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'rqp-metrics-logger[png]'" in err


def test_gaps_break_the_line_and_two_sources_are_labelled():
    t = datetime(2026, 11, 24, 10, tzinfo=UTC)
    pts = [0, 1, 2, 3, 20, 21, 22]  # a logger outage between minute 3 and 20
    samples = [Sample(t + timedelta(minutes=m), "vm", "azure", CPU_PERCENT, 10.0, "Percent", 60.0) for m in pts]
    samples += [Sample(t + timedelta(minutes=m), "vm", "host", NET_IN_BYTES, 6000.0, "Bytes", 60.0) for m in pts]
    (view,) = build_views(samples)
    cpu, net, _disk = view.charts
    assert [s.label for s in cpu.series] == ["CPU % (azure)", "CPU % (host)"]
    svg = render_chart(cpu, t, t + timedelta(minutes=22), [])
    assert svg.count("<polyline") == 2
    net_in_host = next(s for s in net.series if s.label == "in (host)")
    assert {v for _, v in net_in_host.points} == {100.0}  # 6000 bytes per 60 s, charted as B/s


def test_marks_accept_the_documented_shapes_and_reject_bad_times(tmp_path):
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"w2": ["2026-11-24T10:00:00Z", 1795521600], "w3": {"start": "2026-11-24T09:00:00+01:00"}}))
    marks = collect_marks([str(f)], ["w1=2026-11-24T07:00:00Z,2026-11-24T07:30:00Z"])
    assert [(m.name, m.start, m.end) for m in marks] == [
        ("w1", datetime(2026, 11, 24, 7, tzinfo=UTC), datetime(2026, 11, 24, 7, 30, tzinfo=UTC)),
        ("w3", datetime(2026, 11, 24, 8, tzinfo=UTC), None),  # +01:00 read as UTC 08:00
        (
            "w2",
            datetime(2026, 11, 24, 10, tzinfo=UTC),
            datetime.fromtimestamp(1795521600, UTC),
        ),  # epoch seconds
    ]
    from rqp.errors import ConfigError

    with pytest.raises(ConfigError, match="must look like NAME="):
        parse_mark_arg("no-equals-sign")
    with pytest.raises(ConfigError, match="is not a time"):
        parse_mark_arg("w=yesterday")
    with pytest.raises(ConfigError, match="ends before it starts"):
        parse_mark_arg("w=2026-11-24T10:00:00Z,2026-11-24T09:00:00Z")


def test_since_accepts_durations_and_times():
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert parse_since("1h", now) == now - timedelta(hours=1)
    assert parse_since("1h30m", now) == now - timedelta(minutes=90)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("2026-11-24T11:00:00Z", now) == now - timedelta(hours=1)
    from rqp.errors import ConfigError

    with pytest.raises(ConfigError, match="neither a duration"):
        parse_since("soon", now)
