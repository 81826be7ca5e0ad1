"""The metrics logger's own settings, read from ``RQP_*`` environment variables.

The shared ones (where to store, which queue backend) stay in ``rqp.config.Settings``; these are
the few only this role needs, validated at start so a typo fails with one line instead of an
empty report a day later.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rqp.config import settings_from_env
from rqp.errors import ConfigError

__all__ = [
    "DEFAULT_AZURE_LOOKBACK_SECONDS",
    "DEFAULT_INTERVAL_SECONDS",
    "DEFAULT_METRICS_QUEUE",
    "DEFAULT_NET_DEV_PATH",
    "DEFAULT_SOURCE",
    "DEFAULT_SPOOL_MAX_SAMPLES",
    "SOURCES",
    "MetricsSettings",
    "check_https_or_loopback",
]

DEFAULT_INTERVAL_SECONDS = 60.0
MIN_INTERVAL_SECONDS = 1.0
DEFAULT_METRICS_QUEUE = "rqp-metrics"
DEFAULT_SOURCE = "host"
SOURCES = ("host", "azure", "both")
#: Azure Monitor publishes a minute's value a few minutes late: each cycle re-reads this far back
#: and keeps only points newer than the last one seen
DEFAULT_AZURE_LOOKBACK_SECONDS = 600.0
#: where the host source reads network counters: this process's network namespace (the VM's when
#: the logger runs with network_mode: host, as the VM Compose files do)
DEFAULT_NET_DEV_PATH = "/proc/net/dev"
#: samples held in memory while storage is down (~200 bytes each: ~20 MB)
DEFAULT_SPOOL_MAX_SAMPLES = 100_000

#: setting name → environment variable
ENV_NAMES = {
    "interval": "RQP_METRICS_INTERVAL",
    "source": "RQP_METRICS_SOURCE",
    "metrics_queue": "RQP_METRICS_QUEUE",
    "host_name": "RQP_METRICS_HOST_NAME",
    "azure_subscription_id": "RQP_AZURE_SUBSCRIPTION_ID",
    "azure_resource_group": "RQP_AZURE_RESOURCE_GROUP",
    "arm_url": "RQP_AZURE_ARM_URL",
    "azure_lookback": "RQP_METRICS_AZURE_LOOKBACK",
    "spool_max_samples": "RQP_METRICS_SPOOL_MAX",
    "net_dev": "RQP_METRICS_NET_DEV",
    "backlog_resource_id": "RQP_METRICS_BACKLOG_RESOURCE_ID",
    "backlog_region": "RQP_METRICS_BACKLOG_REGION",
    "monitoring_url": "RQP_AZURE_MONITORING_URL",
    "backlog_redis_url": "RQP_METRICS_BACKLOG_REDIS_URL",
    "backlog_redis_password_file": "RQP_METRICS_BACKLOG_REDIS_PASSWORD_FILE",
}

_LOOPBACK_NAMES = ("localhost",)
#: this role's errors word a bad value by its type ("RQP_METRICS_INTERVAL must be a float"), as
#: they always have: no type is given rqp.config's wording ("a number")
_VALUE_KINDS: dict[str, str] = {}


@dataclass(frozen=True)
class MetricsSettings:
    #: seconds between cycles
    interval: float = DEFAULT_INTERVAL_SECONDS
    #: host (psutil on this machine), azure (Azure Monitor, every VM of a resource group) or both
    source: str = DEFAULT_SOURCE
    #: queue receiving one summary message per cycle
    metrics_queue: str = DEFAULT_METRICS_QUEUE
    #: the VM name host samples are filed under (default: this machine's host name)
    host_name: str = ""
    azure_subscription_id: str | None = None
    azure_resource_group: str | None = None
    #: Azure Resource Manager endpoint (ARM and Monitor share it); None = public Azure cloud.
    #: Plain http is accepted only for a loopback address (a local test stub)
    arm_url: str | None = None
    azure_lookback: float = DEFAULT_AZURE_LOOKBACK_SECONDS
    spool_max_samples: int = DEFAULT_SPOOL_MAX_SAMPLES
    #: the /proc/net/dev file whose interfaces are this VM's (host source)
    net_dev: str = DEFAULT_NET_DEV_PATH
    #: the Azure resource the backlog metrics are filed under (the processor scale set); None:
    #: no backlog metric is published (the default)
    backlog_resource_id: str | None = None
    #: that resource's region (the ingestion endpoint is https://<region>.monitoring.azure.com)
    backlog_region: str | None = None
    #: replaces https://<region>.monitoring.azure.com; plain http only to loopback (a test stub)
    monitoring_url: str | None = None
    #: Redis the backlog is read from, as a user that may read the workloads (the console's
    #: read-only user: the logger's own may only append to its stream); None: RQP_REDIS_URL
    backlog_redis_url: str | None = None
    backlog_redis_password_file: str | None = None

    def __post_init__(self) -> None:
        if not self.host_name:
            object.__setattr__(self, "host_name", socket.gethostname() or "localhost")
        self._validate()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> MetricsSettings:
        """Environment first, then explicit overrides (CLI flags); ``None`` overrides are ignored."""
        return settings_from_env(cls, ENV_NAMES, what="metrics", env=env, overrides=overrides, kinds=_VALUE_KINDS)

    @property
    def uses_azure(self) -> bool:
        return self.source in ("azure", "both")

    @property
    def uses_host(self) -> bool:
        return self.source in ("host", "both")

    def _validate(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"RQP_METRICS_SOURCE must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.interval < MIN_INTERVAL_SECONDS:
            raise ConfigError(
                f"RQP_METRICS_INTERVAL must be at least {MIN_INTERVAL_SECONDS:g} seconds, got {self.interval:g}"
            )
        if self.azure_lookback <= 0:
            raise ConfigError(f"RQP_METRICS_AZURE_LOOKBACK must be positive seconds, got {self.azure_lookback:g}")
        if self.spool_max_samples < 1:
            raise ConfigError(f"RQP_METRICS_SPOOL_MAX must be at least 1, got {self.spool_max_samples}")
        if self.uses_host and not os.access(self.net_dev, os.R_OK):
            raise ConfigError(
                f"RQP_METRICS_NET_DEV={self.net_dev} cannot be read; name this VM's /proc/net/dev "
                f"(default {DEFAULT_NET_DEV_PATH}, or a mounted host /proc/1/net/dev)"
            )
        q = self.metrics_queue
        if not q or not all(c.isalnum() or c in "-_" for c in q):
            raise ConfigError(f"RQP_METRICS_QUEUE must be letters, digits, '-' or '_', got {q!r}")
        if self.uses_azure:
            if not self.azure_subscription_id:
                raise ConfigError(
                    f"RQP_METRICS_SOURCE={self.source} needs RQP_AZURE_SUBSCRIPTION_ID (the subscription holding the VMs)"
                )
            if not self.azure_resource_group:
                raise ConfigError(
                    f"RQP_METRICS_SOURCE={self.source} needs RQP_AZURE_RESOURCE_GROUP (the resource group holding the VMs)"
                )
        if self.arm_url is not None:
            _check_arm_url(self.arm_url)
        if self.backlog_resource_id is not None:
            if not self.backlog_resource_id.startswith("/subscriptions/"):
                raise ConfigError(
                    f"RQP_METRICS_BACKLOG_RESOURCE_ID must be an Azure resource id (/subscriptions/...), got {self.backlog_resource_id!r}"
                )
            if not self.backlog_region and self.monitoring_url is None:
                raise ConfigError(
                    "RQP_METRICS_BACKLOG_RESOURCE_ID needs RQP_METRICS_BACKLOG_REGION (the resource's region, e.g. westeurope)"
                )
        if self.monitoring_url is not None:
            check_https_or_loopback(
                self.monitoring_url, "RQP_AZURE_MONITORING_URL", "https://westeurope.monitoring.azure.com"
            )

    @property
    def publishes_backlog(self) -> bool:
        return self.backlog_resource_id is not None


def _check_arm_url(url: str) -> None:
    check_https_or_loopback(url, "RQP_AZURE_ARM_URL", "https://management.azure.com")


def check_https_or_loopback(url: str, variable: str, example: str) -> None:
    """An Azure endpoint a bearer token is sent to: https, or plain http to a loopback stub only."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{variable} must be an https:// URL like {example}, got {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"{variable} {url!r} is plain http to a non-loopback host; bearer tokens need https (http is only for a local stub on 127.0.0.1)"
        )


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
