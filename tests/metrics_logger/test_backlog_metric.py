"""The backlog metric (issue #27 item 4): queued records, per processor and the processors they
want, read from a real Redis and sent to a local stub of Azure Monitor's custom metrics
ingestion API in the documented shape."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import azure.identity
import pytest
import redis

from rqp.cli.fleet import FleetSettings
from rqp.errors import ConfigError
from rqp.ledger import FLEET, Meta, WorkloadKeys
from rqp_metrics.backlog import (
    BACKLOG_NAMESPACE,
    QUEUED_RECORDS,
    QUEUED_RECORDS_PER_PROCESSOR,
    WANTED_PROCESSORS,
    BacklogPublisher,
)
from rqp_metrics.cli import main
from rqp_metrics.custom_metrics import MAX_ATTEMPTS, MONITORING_SCOPE, CustomMetricsClient, CustomMetricsError
from rqp_metrics.logger import MetricsLogger
from rqp_metrics.settings import MetricsSettings
from rqp_metrics.spool import Spool

from .helpers import ScriptedSource
from .stub_monitor_ingest import TOKEN, MonitorIngestStub, ScopedCredential

VMSS = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-rqp/providers/Microsoft.Compute/virtualMachineScaleSets/rqp-processors"
AT = datetime(2026, 12, 6, 21, 30, 5, tzinfo=UTC)


@pytest.fixture
def ingest():
    s = MonitorIngestStub().start()
    yield s
    s.stop()


def client(ingest: MonitorIngestStub, credential=None, **kw) -> CustomMetricsClient:
    return CustomMetricsClient(
        VMSS,
        "westeurope",
        namespace=BACKLOG_NAMESPACE,
        credential=credential or ScopedCredential(),
        base_url=ingest.url,
        **kw,
    )


def test_a_value_is_posted_in_the_documented_shape_with_a_monitoring_token(ingest):
    cred = ScopedCredential()
    client(ingest, cred).send(QUEUED_RECORDS, 1234.0, AT)
    [post] = ingest.posts
    assert post.status == 200
    assert post.path == VMSS + "/metrics"
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["Content-Type"] == "application/json"
    assert cred.scopes == [(MONITORING_SCOPE,)] and MONITORING_SCOPE.startswith("https://monitoring.azure.com/")
    assert post.body == {
        "time": "2026-12-06T21:30:05Z",
        "data": {
            "baseData": {
                "metric": "QueuedRecords",
                "namespace": "rqp",
                "series": [{"min": 1234.0, "max": 1234.0, "sum": 1234.0, "count": 1}],
            }
        },
    }


def test_dimensions_go_in_dimnames_and_dimvalues(ingest):
    client(ingest).send(QUEUED_RECORDS, 7, AT, dims=[("Queue", "rqp")])
    base = ingest.posts[0].body["data"]["baseData"]
    assert ingest.posts[0].status == 200
    assert base["dimNames"] == ["Queue"] and base["series"][0]["dimValues"] == ["rqp"]


def test_a_throttled_post_is_retried_after_retry_after(ingest):
    ingest.throttle = 1
    client(ingest).send(QUEUED_RECORDS, 5, AT)
    assert [p.status for p in ingest.posts] == [429, 200]
    assert ingest.posts[1].at - ingest.posts[0].at >= ingest.retry_after * 0.9  # waited as told
    assert ingest.posts[0].body == ingest.posts[1].body  # the same value, not a new one


def test_throttling_past_the_retries_is_one_error_and_the_next_value_goes_through(ingest):
    ingest.throttle, ingest.retry_after = MAX_ATTEMPTS, 0
    c = client(ingest)
    with pytest.raises(CustomMetricsError, match=f"after {MAX_ATTEMPTS} tries.*429"):
        c.send(QUEUED_RECORDS, 5, AT)
    assert len(ingest.posts) == MAX_ATTEMPTS
    c.send(QUEUED_RECORDS, 6, AT)
    assert ingest.values() == {QUEUED_RECORDS: 6}


def test_an_identity_without_the_publisher_role_is_a_configuration_error_naming_it(ingest):
    ingest.denied = True
    with pytest.raises(ConfigError, match="Monitoring Metrics Publisher role"):
        client(ingest).send(QUEUED_RECORDS, 5, AT)
    assert len(ingest.posts) == 1  # not retried: waiting does not grant a role


@pytest.mark.parametrize(
    ("env", "wrong"),
    [
        ({"RQP_METRICS_BACKLOG_RESOURCE_ID": VMSS}, "RQP_METRICS_BACKLOG_REGION"),
        ({"RQP_METRICS_BACKLOG_RESOURCE_ID": "rqp-processors", "RQP_METRICS_BACKLOG_REGION": "x"}, "resource id"),
        ({"RQP_AZURE_MONITORING_URL": "http://monitor.example.com"}, "plain http to a non-loopback host"),
    ],
)
def test_settings_refuse_what_cannot_work_in_one_line(env, wrong):
    with pytest.raises(ConfigError, match=wrong):
        MetricsSettings.from_env(env)


def test_backlog_is_off_unless_configured():
    assert not MetricsSettings.from_env({}).publishes_backlog


def test_the_logger_publishes_a_real_backlog_each_cycle(cluster, ingest, sample_store):
    records = 40
    data = cluster.write_data("d.jsonl", ({"n": i} for i in range(records)))
    script = cluster.write_script("s.py", "def process(r):\n    return r\n")
    wid = cluster.pack("backlog-w", data, script)
    cluster.start_scheduler(wid)  # no processor: the records stay queued
    cluster.wait_for(
        lambda: (s := cluster.status(wid)).get("state") == "running" and s.get("total") == records,
        what="the workload to be enqueued whole",
    )
    r = redis.Redis.from_url(cluster.redis_url)
    publisher = BacklogPublisher(
        r, "rqp", client(ingest), FleetSettings(records_per_second=1, drain_seconds=10, maximum=3)
    )
    logger = MetricsLogger([ScriptedSource(AT)], Spool(sample_store), None, backlog=publisher)
    try:
        result = logger.run_once()
        assert result.backlog is not None and result.backlog.error is None and result.backlog.sent == 3
        assert result.summary.warnings == []
        assert ingest.values() == {QUEUED_RECORDS: records, QUEUED_RECORDS_PER_PROCESSOR: records, WANTED_PROCESSORS: 3}

        # a Redis writer's forged counter moves the metric, never the fleet past its maximum
        r.hset(WorkloadKeys(wid).meta, Meta.ENQUEUED, str(10**15))
        logger.run_once()
        assert ingest.values()[WANTED_PROCESSORS] == 3
        r.hset(WorkloadKeys(wid).meta, Meta.ENQUEUED, "9" * 4000)  # past any float
        assert logger.run_once().backlog.error is None and ingest.values()[WANTED_PROCESSORS] == 3
        r.hset(WorkloadKeys(wid).meta, Meta.ENQUEUED, "junk")
        assert logger.run_once().backlog.error is None  # junk reads as nothing queued, no crash
        # a key of the wrong type: this cycle's values are lost with a warning, the logger goes on
        r.set(FLEET, "junk")
        result = logger.run_once()
        assert "backlog not read from Redis" in (result.backlog.error or "") and result.flush.stored == 4
        r.delete(FLEET)

        # Azure Monitor down: this cycle's values are lost with a warning, the samples are stored
        ingest.denied = True
        result = logger.run_once()
        assert result.backlog.error and "Monitoring Metrics Publisher" in result.summary.warnings[0]
        assert result.flush.stored == 4 and result.flush.spooled == 0
    finally:
        logger.close()
        r.close()


def test_a_redis_outage_costs_the_backlog_values_not_the_cycle(ingest, sample_store):
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    publisher = BacklogPublisher(dead, "rqp", client(ingest))
    logger = MetricsLogger([ScriptedSource(AT)], Spool(sample_store), None, backlog=publisher)
    started = time.monotonic()
    result = logger.run_once()
    assert result.backlog is not None and "RQP_METRICS_BACKLOG_REDIS_URL" in (result.backlog.error or "")
    assert result.flush.stored == 4 and ingest.posts == []
    assert time.monotonic() - started < 10


def test_rqp_metrics_logger_once_publishes_the_backlog_when_configured(
    monkeypatch, ingest, redis_url, tmp_path, capsys
):
    """The command as deployed: the settings from the environment, Azure's credential chain
    replaced by a local credential (no request ever leaves the machine)."""
    for k in list(os.environ):
        if k.startswith("RQP_"):
            monkeypatch.delenv(k)
    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", lambda **kw: ScopedCredential())
    monkeypatch.setenv("RQP_REDIS_URL", redis_url)
    monkeypatch.setenv("RQP_METRICS_BACKLOG_RESOURCE_ID", VMSS)
    monkeypatch.setenv("RQP_METRICS_BACKLOG_REGION", "westeurope")
    monkeypatch.setenv("RQP_AZURE_MONITORING_URL", ingest.url)
    monkeypatch.setenv("RQP_FLEET_MIN", "1")
    code = main(["--once", "--no-publish", "--host-name", "h", "--blob-url", f"file://{tmp_path / 'blobs'}"])
    out = capsys.readouterr().out
    assert code == 0 and "backlog 0 record(s) sent to Azure Monitor" in out
    assert ingest.values() == {QUEUED_RECORDS: 0, QUEUED_RECORDS_PER_PROCESSOR: 0, WANTED_PROCESSORS: 1}
    assert {p.path for p in ingest.posts} == {VMSS + "/metrics"}

    monkeypatch.delenv("RQP_METRICS_BACKLOG_REGION")
    monkeypatch.delenv("RQP_AZURE_MONITORING_URL")
    assert main(["--once", "--no-publish", "--blob-url", f"file://{tmp_path / 'blobs'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "rqp-metrics-logger: error: RQP_METRICS_BACKLOG_RESOURCE_ID needs RQP_METRICS_BACKLOG_REGION "
        "(the resource's region, e.g. westeurope)"
    ]
