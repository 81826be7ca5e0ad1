"""The Azure source against the local ARM / Azure Monitor stub (api-version 2024-02-01)."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import pytest

from rqp.errors import ConfigError
from rqp_metrics.sample import COLLECTOR_WARNING, CPU_PERCENT, DISK_READ_OPS, NET_IN_BYTES, SOURCE_AZURE
from rqp_metrics.sources.azure import AZURE_METRICS

from .stub_azure import METRICS_API_VERSION, minute_values


def _expected(stub, vm: str, now, lookback_min: int = 5):
    """What the stub serves for ``vm`` over the lookback, minus the newest (not yet aggregated) minute."""
    idx = stub.vms.index(vm)
    first = (now - timedelta(minutes=lookback_min)).replace(second=0) + timedelta(minutes=1)
    minutes = [first + timedelta(minutes=i) for i in range(lookback_min - 1)]
    out = {}
    for az_name, spec in AZURE_METRICS.items():
        for ts in minutes:
            out[(spec.metric, ts)] = minute_values(idx, az_name, ts)[spec.aggregation]
    return out


def _by_vm(samples):
    got = defaultdict(dict)
    for s in samples:
        if s.metric != COLLECTOR_WARNING:
            got[s.vm][(s.metric, s.ts)] = s.value
    return got


def test_lists_every_vm_across_pages_and_reads_all_metrics(stub, azure_source, now):
    src = azure_source()
    out = src.collect()
    assert out.warnings == []
    got = _by_vm(out.samples)
    assert sorted(got) == ["vm-a", "vm-b", "vm-c"]  # vm-c is on the second page; the NIC/storage are filtered out
    for vm in stub.vms:
        assert got[vm] == _expected(stub, vm, now)
    listing = stub.listing_requests()
    assert len(listing) == 2 and "$skiptoken" in listing[1].query  # the SDK followed nextLink
    assert listing[0].query["$filter"] == "resourceType eq 'Microsoft.Compute/virtualMachines'"
    metric_calls = stub.metric_requests()
    assert len(metric_calls) == 3  # one query per VM for all seven metrics
    q = metric_calls[0].query
    assert q["api-version"] == METRICS_API_VERSION and q["interval"] == "PT1M" and q["aggregation"] == "Average,Total"
    assert q["metricnames"].split(",") == list(AZURE_METRICS)
    s = next(x for x in out.samples if x.vm == "vm-b" and x.metric == CPU_PERCENT)
    assert (s.source, s.unit, s.period) == (SOURCE_AZURE, "Percent", 60.0)


def test_only_new_points_are_emitted_on_the_next_cycle(stub, azure_source, now):
    clock = {"now": now}
    src = azure_source(clock=lambda: clock["now"])
    first = src.collect()
    assert len(first.samples) == 3 * 7 * 4
    assert src.collect().samples == []  # nothing new at the same time
    clock["now"] = now + timedelta(minutes=2)
    later = src.collect()
    newest_before = max(s.ts for s in first.samples)
    assert later.samples and all(s.ts > newest_before for s in later.samples)
    assert len(later.samples) == 3 * 7 * 2  # two more minutes per VM and metric


def test_throttled_vm_is_retried_after_retry_after_and_its_samples_arrive(stub, azure_source, now):
    stub.throttle["vm-b"] = 1
    out = azure_source().collect()
    calls = stub.metric_requests("vm-b")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= stub.retry_after * 0.9  # the SDK waited as told
    assert _by_vm(out.samples)["vm-b"] == _expected(stub, "vm-b", now)
    assert out.warnings == []


def test_throttling_beyond_the_retries_skips_the_vm_and_it_is_caught_up_next_cycle(stub, azure_source, now):
    stub.throttle["vm-b"] = 1
    src = azure_source(retry_total=0)  # no retries: the 429 reaches the logger
    first = src.collect()
    assert "vm-b" not in _by_vm(first.samples)
    assert _by_vm(first.samples)["vm-a"] == _expected(stub, "vm-a", now)
    warn = [s for s in first.samples if s.metric == COLLECTOR_WARNING]
    assert [w.vm for w in warn] == ["vm-b"] and "429" in (warn[0].note or "")
    second = src.collect()  # same window: vm-b's points were never emitted, so they come now
    assert _by_vm(second.samples) == {"vm-b": _expected(stub, "vm-b", now)}


def test_vm_returning_404_is_skipped_with_a_warning_and_the_others_go_on(stub, azure_source, now):
    stub.gone.add("vm-b")
    out = azure_source().collect()
    got = _by_vm(out.samples)
    assert sorted(got) == ["vm-a", "vm-c"]
    assert got["vm-a"] == _expected(stub, "vm-a", now) and got["vm-c"] == _expected(stub, "vm-c", now)
    warn = [s for s in out.samples if s.metric == COLLECTOR_WARNING]
    assert [(w.vm, w.value) for w in warn] == [("vm-b", 1.0)]
    assert "not found (404" in (warn[0].note or "")
    assert any("vm-b" in w and "404" in w for w in out.warnings)


def test_metric_not_found_is_skipped_and_the_rest_read_one_by_one(stub, azure_source, now):
    stub.missing_metrics["vm-a"] = {"Disk Read Operations/Sec"}
    src = azure_source()
    out = src.collect()
    got = _by_vm(out.samples)
    expected = {k: v for k, v in _expected(stub, "vm-a", now).items() if k[0] != DISK_READ_OPS}
    assert got["vm-a"] == expected
    assert got["vm-b"] == _expected(stub, "vm-b", now)  # other VMs unaffected
    calls = stub.metric_requests("vm-a")
    assert [c.status for c in calls] == [400] + [200] * 3 + [400] + [200] * 3
    assert [c.query["metricnames"] for c in calls[1:]] == list(AZURE_METRICS)
    warn = [s for s in out.samples if s.metric == COLLECTOR_WARNING]
    assert len(warn) == 1 and warn[0].vm == "vm-a" and "MetricNotFound" in (warn[0].note or "")
    # the missing metric is remembered: next cycle is one query without it, and no new warning
    before = len(stub.metric_requests("vm-a"))
    again = src.collect()
    calls = stub.metric_requests("vm-a")[before:]
    assert [c.status for c in calls] == [200]
    assert "Disk Read Operations/Sec" not in calls[0].query["metricnames"]
    assert not [s for s in again.samples if s.metric == COLLECTOR_WARNING]


def test_unknown_resource_group_is_a_config_error(stub, azure_source):
    stub.resource_group = "rg-other"  # the logger still asks for rg-rqp
    src = azure_source()
    src.resource_group = "rg-missing"
    with pytest.raises(ConfigError) as info:
        src.collect()
    assert "rg-missing" in str(info.value) and "RQP_AZURE_RESOURCE_GROUP" in str(info.value)


def test_identity_without_reader_rights_is_a_config_error_naming_the_role(stub, azure_source):
    stub.denied = True
    with pytest.raises(ConfigError) as info:
        azure_source().collect()
    text = str(info.value)
    assert "Reader" in text and "HTTP 403" in text and "\n" not in text


def test_network_samples_are_totals_per_minute(stub, azure_source, now):
    out = azure_source().collect()
    net = sorted((s for s in out.samples if s.vm == "vm-a" and s.metric == NET_IN_BYTES), key=lambda s: s.ts)
    assert [s.value for s in net] == [2_000_000.0 + s.ts.minute for s in net]
    assert all(s.unit == "Bytes" and s.period == 60.0 for s in net)
