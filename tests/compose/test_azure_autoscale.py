"""The ARM template's Spot and autoscale settings (issue #27 item 4): the processor scale set can be
Spot with an on-demand baseline beside it, scales on the backlog metric the metrics logger
publishes (the names must be the logger's own, or autoscale watches a metric nobody sends), and
gives a scale-in the Terminate notice the processors drain on. checkov runs in `make check-deploy`
(tools/check-deploy.sh)."""

from __future__ import annotations

import json
from pathlib import Path

from rqp.cli.fleet import DEFAULT_DRAIN_SECONDS, DEFAULT_RECORDS_PER_SECOND
from rqp_metrics.backlog import BACKLOG_NAMESPACE, QUEUED_RECORDS_PER_PROCESSOR

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "compose" / "azure" / "azuredeploy.json"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"


def template() -> dict:
    return json.loads(TEMPLATE.read_text())


def scale_sets(tpl: dict) -> dict[str, dict]:
    return {r["name"]: r for r in tpl["resources"] if r["type"] == "Microsoft.Compute/virtualMachineScaleSets"}


def test_the_processor_scale_set_can_be_spot_with_eviction_delete_and_a_max_price():
    tpl = template()
    p = tpl["parameters"]
    assert p["processorPriority"]["allowedValues"] == ["Regular", "Spot"]
    assert p["processorSpotMaxPrice"]["defaultValue"] == "-1"  # up to on-demand: evicted for capacity only
    assert tpl["variables"]["isSpot"] == "[equals(parameters('processorPriority'), 'Spot')]"
    vp = scale_sets(tpl)["[variables('processorScaleSetName')]"]["properties"]["virtualMachineProfile"]
    assert vp["priority"] == "[parameters('processorPriority')]"
    assert vp["evictionPolicy"] == "[if(variables('isSpot'), 'Delete', null())]"
    assert "parameters('processorSpotMaxPrice')" in vp["billingProfile"] and "maxPrice" in vp["billingProfile"]


def test_an_optional_on_demand_baseline_runs_the_same_processors():
    sets = scale_sets(template())
    main = sets["[variables('processorScaleSetName')]"]
    base = sets["[variables('processorBaselineScaleSetName')]"]
    assert base["condition"] == "[greater(parameters('processorBaselineCount'), 0)]"
    assert base["sku"]["capacity"] == "[parameters('processorBaselineCount')]"
    bvp, mvp = base["properties"]["virtualMachineProfile"], main["properties"]["virtualMachineProfile"]
    assert bvp["priority"] == "Regular" and "evictionPolicy" not in bvp and "billingProfile" not in bvp
    # the same processors: cloud-init, identity, subnet
    assert bvp["osProfile"]["customData"] == mvp["osProfile"]["customData"]
    assert base["identity"] == main["identity"] and bvp["networkProfile"] == mvp["networkProfile"]
    assert bvp["osProfile"]["computerNamePrefix"] != mvp["osProfile"]["computerNamePrefix"]


def test_scale_in_gives_the_terminate_notice_the_processors_drain_on():
    for name, vmss in scale_sets(template()).items():
        profile = vmss["properties"]["virtualMachineProfile"]["scheduledEventsProfile"]["terminateNotificationProfile"]
        assert profile == {"enable": True, "notBeforeTimeout": "[parameters('processorTerminateNotBefore')]"}, name


def test_autoscale_follows_the_backlog_metric_the_logger_publishes():
    tpl = template()
    v, p = tpl["variables"], tpl["parameters"]
    assert v["backlogMetricNamespace"] == BACKLOG_NAMESPACE and v["backlogMetricName"] == QUEUED_RECORDS_PER_PROCESSOR
    auto = next(r for r in tpl["resources"] if r["type"] == "Microsoft.Insights/autoscalesettings")
    vmss_id = "[resourceId('Microsoft.Compute/virtualMachineScaleSets', variables('processorScaleSetName'))]"
    assert auto["properties"]["targetResourceUri"] == vmss_id
    [profile] = auto["properties"]["profiles"]
    rules = {r["scaleAction"]["direction"]: r for r in profile["rules"]}
    assert set(rules) == {"Increase", "Decrease"}
    for rule in rules.values():
        trig = rule["metricTrigger"]
        assert trig["metricName"] == "[variables('backlogMetricName')]"
        assert trig["metricNamespace"] == "[variables('backlogMetricNamespace')]"
        assert trig["metricResourceUri"] == vmss_id  # where the logger files it (the output it is told)
    assert rules["Increase"]["metricTrigger"]["operator"] == "GreaterThan"
    assert rules["Decrease"]["metricTrigger"]["operator"] == "LessThan"
    assert rules["Increase"]["metricTrigger"]["threshold"] == "[parameters('backlogScaleOutPerProcessor')]"
    assert rules["Decrease"]["metricTrigger"]["threshold"] == "[parameters('backlogScaleInPerProcessor')]"
    # the default scale-out threshold is rqp fleet's one-processor share at its defaults
    assert p["backlogScaleOutPerProcessor"]["defaultValue"] == DEFAULT_RECORDS_PER_SECOND * DEFAULT_DRAIN_SECONDS
    assert p["backlogScaleInPerProcessor"]["defaultValue"] < p["backlogScaleOutPerProcessor"]["defaultValue"]
    assert tpl["outputs"]["backlogMetricResourceId"]["value"] == vmss_id


def test_the_scheduler_identity_may_publish_metrics_on_the_scale_set_only():
    tpl = template()
    grants = [
        r
        for r in tpl["resources"]
        if r["type"] == "Microsoft.Authorization/roleAssignments"
        and "monitoringMetricsPublisherRole" in r["properties"]["roleDefinitionId"]
    ]
    assert tpl["variables"]["monitoringMetricsPublisherRole"] == MONITORING_METRICS_PUBLISHER
    [grant] = grants
    assert "schedulerIdentityId" in grant["properties"]["principalId"]
    assert (
        grant["scope"] == "[concat('Microsoft.Compute/virtualMachineScaleSets/', variables('processorScaleSetName'))]"
    )
