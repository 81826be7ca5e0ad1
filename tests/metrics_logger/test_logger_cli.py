"""A whole cycle: sources → store (through the spool) → summary on the metrics queue (real Redis)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from rqp.storage import FileBlobStore, RedisMessageQueue
from rqp_metrics.cli import main
from rqp_metrics.logger import MetricsLogger
from rqp_metrics.publisher import SUMMARY_KIND, SummaryPublisher
from rqp_metrics.sample import CPU_PERCENT
from rqp_metrics.sources.host import HostSource
from rqp_metrics.spool import Spool
from rqp_metrics.store import SampleStore

from .helpers import ScriptedSource

QUEUE = "rqp-metrics"
POLL_DEADLINE = 10.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("RQP_"):
            monkeypatch.delenv(k)


def _bodies(queue: RedisMessageQueue) -> list[dict]:
    return [json.loads(m.body) for m in queue.peek(QUEUE, 100)]


def test_cycle_stores_every_sample_and_publishes_a_summary(r, tmp_path):
    store = SampleStore(FileBlobStore(tmp_path / "blobs"))
    scripted = ScriptedSource(datetime.now(UTC).replace(microsecond=0))
    queue = RedisMessageQueue(r)
    logger = MetricsLogger([scripted, HostSource("this-host")], Spool(store), SummaryPublisher(queue, QUEUE))
    result = logger.run_once()
    msgs = _bodies(queue)
    assert len(msgs) == 1
    m = msgs[0]
    assert m["kind"] == SUMMARY_KIND and m["cycle"] == 1
    assert m["samples_read"] == result.summary.samples_read == m["stored"] > 4
    assert m["spooled"] == 0 and m["storage_error"] is None
    assert sorted(m["vms"]) == ["this-host", "vm-1", "vm-2"]
    assert m["vms"]["vm-1"]["samples"] == 2 and m["vms"]["vm-2"]["cpu_percent"] == 21.0
    assert m["blob_count"] == len(m["blobs"]) == 3
    back = store.read(datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1))
    assert len(back.samples) == m["stored"]
    assert {s.vm for s in back.samples if s.metric == CPU_PERCENT} == {"vm-1", "vm-2", "this-host"}


class FlakyQueue(RedisMessageQueue):
    def __init__(self, client, failures: int) -> None:
        super().__init__(client)
        self.failures = failures

    def send(self, queue, body):
        if self.failures > 0:
            self.failures -= 1
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")
        return super().send(queue, body)


def test_queue_outage_holds_summaries_and_sends_them_in_order_later(r, tmp_path):
    queue = FlakyQueue(r, failures=2)
    logger = MetricsLogger(
        [ScriptedSource(datetime(2026, 11, 24, 10, tzinfo=UTC))],
        Spool(SampleStore(FileBlobStore(tmp_path))),
        SummaryPublisher(queue, QUEUE),
    )
    assert logger.run_once().published == 0
    assert logger.run_once().published == 0
    third = logger.run_once()
    assert third.published == 3
    msgs = _bodies(queue)
    assert [m["cycle"] for m in msgs] == [1, 2, 3]
    assert any("metrics queue was unavailable" in w for w in msgs[2]["warnings"])
    assert all(m["stored"] == 4 for m in msgs)  # storage never depended on the queue


def test_background_logger_runs_on_its_interval_until_stopped(r, tmp_path):
    """What a processor embeds to report its own host."""
    queue = RedisMessageQueue(r)
    store = SampleStore(FileBlobStore(tmp_path))
    source = ScriptedSource(datetime(2026, 11, 24, 10, tzinfo=UTC))
    logger = MetricsLogger([source], Spool(store), SummaryPublisher(queue, QUEUE))
    thread = logger.start_background(interval=0.1)
    deadline = time.monotonic() + POLL_DEADLINE
    while queue.length(QUEUE) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)  # polling with a deadline
    logger.stop()
    assert not thread.is_alive()
    assert queue.length(QUEUE) >= 3
    back = store.read(datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC))
    assert len(back.samples) == len(source.emitted) == 4 * source.cycle


def test_cli_once_records_this_host_and_publishes(redis_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RQP_REDIS_URL", redis_url)
    monkeypatch.setenv("RQP_ALLOW_INSECURE_REDIS", "true")
    code = main(["--once", "--host-name", "cli-host", "--blob-url", f"file://{tmp_path}/blobs"])
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "read 10 samples from host (1 VM(s)), stored 10 in 1 blob(s)" in out and f"summary sent to queue {QUEUE}" in out
    )
    names = list(FileBlobStore(tmp_path / "blobs").list("metrics/"))
    assert len(names) == 1 and "/cli-host/" in names[0]
    msgs = _bodies(RedisMessageQueue(redis.Redis.from_url(redis_url)))
    assert len(msgs) == 1 and msgs[0]["vms"]["cli-host"]["samples"] == 10


def test_cli_once_with_storage_down_exits_5_naming_the_store(tmp_path, capsys):
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "metrics").write_text("a file where the metrics directory should be")
    code = main(["--once", "--no-publish", "--blob-url", f"file://{tmp_path}/blobs"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 5
    assert err[-1].startswith("rqp-metrics-logger: error: 10 metrics samples could not be stored in file://")
    assert "RQP_BLOB_URL" in err[-1]


def test_cli_azure_without_subscription_is_a_one_line_config_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RQP_METRICS_SOURCE", "azure")
    code = main(["--once", "--no-publish", "--blob-url", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [
        "rqp-metrics-logger: error: RQP_METRICS_SOURCE=azure needs RQP_AZURE_SUBSCRIPTION_ID (the subscription holding the VMs)"
    ]
