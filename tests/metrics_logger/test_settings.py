from __future__ import annotations

import pytest

from rqp.errors import ConfigError
from rqp_metrics.settings import DEFAULT_METRICS_QUEUE, MetricsSettings

AZ = {"RQP_AZURE_SUBSCRIPTION_ID": "sub", "RQP_AZURE_RESOURCE_GROUP": "rg"}


def test_defaults_are_host_every_minute_to_rqp_metrics():
    s = MetricsSettings.from_env(env={})
    assert (s.source, s.interval, s.metrics_queue) == ("host", 60.0, DEFAULT_METRICS_QUEUE)
    assert s.host_name  # the machine's host name
    assert s.uses_host and not s.uses_azure


def test_environment_is_read_and_overrides_win():
    env = {
        **AZ,
        "RQP_METRICS_SOURCE": "both",
        "RQP_METRICS_INTERVAL": "15",
        "RQP_AZURE_ARM_URL": "http://127.0.0.1:8080",
        "RQP_METRICS_QUEUE": "m-q",
    }
    s = MetricsSettings.from_env(env=env, interval=5, host_name="proc-1")
    assert (s.source, s.interval, s.host_name, s.metrics_queue) == ("both", 5.0, "proc-1", "m-q")
    assert (s.azure_subscription_id, s.azure_resource_group, s.arm_url) == ("sub", "rg", "http://127.0.0.1:8080")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"RQP_METRICS_SOURCE": "gcp"}, "RQP_METRICS_SOURCE must be one of host, azure, both"),
        ({"RQP_METRICS_INTERVAL": "fast"}, "RQP_METRICS_INTERVAL must be a float"),
        ({"RQP_METRICS_INTERVAL": "0.1"}, "RQP_METRICS_INTERVAL must be at least 1"),
        ({"RQP_METRICS_SOURCE": "azure"}, "needs RQP_AZURE_SUBSCRIPTION_ID"),
        ({"RQP_METRICS_SOURCE": "azure", "RQP_AZURE_SUBSCRIPTION_ID": "s"}, "needs RQP_AZURE_RESOURCE_GROUP"),
        ({"RQP_METRICS_QUEUE": "bad queue"}, "RQP_METRICS_QUEUE must be letters"),
        ({"RQP_METRICS_SPOOL_MAX": "0"}, "RQP_METRICS_SPOOL_MAX must be at least 1"),
        ({**AZ, "RQP_AZURE_ARM_URL": "http://management.example.com"}, "plain http to a non-loopback host"),
        ({**AZ, "RQP_AZURE_ARM_URL": "ftp://x"}, "must be an https:// URL"),
    ],
)
def test_invalid_settings_fail_with_one_line_naming_the_variable(env, needle):
    with pytest.raises(ConfigError) as info:
        MetricsSettings.from_env(env=env)
    text = str(info.value)
    assert needle in text
    assert "\n" not in text


def test_https_and_loopback_http_arm_urls_are_accepted():
    for url in ("https://management.azure.com", "http://127.0.0.1:1234", "http://localhost:9", "http://[::1]:80"):
        assert MetricsSettings.from_env(env={**AZ, "RQP_AZURE_ARM_URL": url}).arm_url == url
