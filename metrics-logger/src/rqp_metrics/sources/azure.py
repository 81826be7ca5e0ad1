"""Every VM of one resource group, read from Azure Monitor with Reader rights only.

Two read-only ARM calls per cycle and VM: the resource listing (paged; the SDK follows
``nextLink``) and one metrics query per VM (api-version 2024-02-01) asking for all metrics at
once. What can go wrong is contained to the smallest unit:

* a VM deleted between listing and query (404) → a warning sample for it, the others go on;
* a metric the VM does not have (400 ``MetricNotFound``) → the metrics are asked one by one,
  the missing one is remembered and not asked again;
* throttling (429 with Retry-After) → the SDK's retry policy waits as told and retries; if it
  still fails the VM is skipped this cycle and caught up next cycle (the query looks back
  ``lookback`` seconds and keeps only points newer than the last one seen).

Azure publishes a minute's value a few minutes late, so each point is emitted once, when it first
appears with a value; the watermark is in memory, so a restart may re-read up to ``lookback``
(the report drops such duplicates).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import SansIOHTTPPolicy

from rqp.errors import ConfigError

from ..sample import (
    COLLECTOR_WARNING,
    CPU_PERCENT,
    DISK_READ_BYTES,
    DISK_READ_OPS,
    DISK_WRITE_BYTES,
    DISK_WRITE_OPS,
    NET_IN_BYTES,
    NET_OUT_BYTES,
    SOURCE_AZURE,
    Sample,
    format_ts,
)
from . import Collection

__all__ = ["AZURE_METRICS", "METRICS_API_VERSION", "METRICS_INTERVAL", "VM_RESOURCE_TYPE", "AzureSource"]

VM_RESOURCE_TYPE = "Microsoft.Compute/virtualMachines"
VM_FILTER = f"resourceType eq '{VM_RESOURCE_TYPE}'"
METRICS_API_VERSION = "2024-02-01"
METRICS_INTERVAL = "PT1M"
AGGREGATIONS = "Average,Total"
METRIC_NOT_FOUND = "MetricNotFound"


@dataclass(frozen=True)
class _AzureMetric:
    metric: str
    #: which aggregation of the Azure metric carries the meaning of ours
    aggregation: str
    unit: str


#: Azure Monitor's platform metric for a VM → the shared metric name (Azure documents the
#: byte and network metrics as totals per time grain, the CPU and IOPS ones as averages)
AZURE_METRICS: dict[str, _AzureMetric] = {
    "Percentage CPU": _AzureMetric(CPU_PERCENT, "average", "Percent"),
    "Disk Read Bytes": _AzureMetric(DISK_READ_BYTES, "total", "Bytes"),
    "Disk Write Bytes": _AzureMetric(DISK_WRITE_BYTES, "total", "Bytes"),
    "Disk Read Operations/Sec": _AzureMetric(DISK_READ_OPS, "average", "CountPerSecond"),
    "Disk Write Operations/Sec": _AzureMetric(DISK_WRITE_OPS, "average", "CountPerSecond"),
    "Network In Total": _AzureMetric(NET_IN_BYTES, "total", "Bytes"),
    "Network Out Total": _AzureMetric(NET_OUT_BYTES, "total", "Bytes"),
}

DEFAULT_LOOKBACK_SECONDS = 600.0
DEFAULT_RETRY_TOTAL = 6
DEFAULT_CONNECTION_TIMEOUT = 10
DEFAULT_READ_TIMEOUT = 60


class _AllowLoopbackHttp(SansIOHTTPPolicy):
    """Lets the bearer-token policy send to plain http. Installed only when the ARM URL is a
    loopback address (a local stub); settings refuse http anywhere else."""

    def on_request(self, request: Any) -> None:
        request.context["enforce_https"] = False


@dataclass(frozen=True)
class _Vm:
    name: str
    id: str


def _duration_seconds(iso: str | None, default: float) -> float:
    """ISO-8601 durations as Azure writes time grains (PT1M, PT5M, PT1H, P1D)."""
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", iso or "")
    if not m or not any(m.groups()):
        return default
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


def _error_code(exc: HttpResponseError) -> str:
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None) or ""
    if not code:
        # some services put the code at the top level instead of under "error"
        try:
            text = exc.response.text() if exc.response is not None else ""
        except (AttributeError, UnicodeDecodeError, ValueError):  # a body we cannot read has no code
            text = ""
        m = re.search(r'"code"\s*:\s*"([^"]+)"', text)
        code = m.group(1) if m else ""
    return code


def _is_metric_not_found(exc: HttpResponseError) -> bool:
    return exc.status_code == 400 and (_error_code(exc) == METRIC_NOT_FOUND or METRIC_NOT_FOUND in str(exc))


class AzureSource:
    """Samples of every VM in ``resource_group``, named by the VM's Azure name."""

    name = SOURCE_AZURE

    def __init__(
        self,
        subscription_id: str,
        resource_group: str,
        *,
        credential: Any = None,
        base_url: str | None = None,
        lookback: float = DEFAULT_LOOKBACK_SECONDS,
        retry_total: int = DEFAULT_RETRY_TOTAL,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        from azure.mgmt.monitor import MonitorManagementClient  # noqa: PLC0415 - heavy; only when used
        from azure.mgmt.resource.resources import ResourceManagementClient  # noqa: PLC0415

        if credential is None:
            from azure.identity import DefaultAzureCredential  # noqa: PLC0415

            # managed identity on a VM, or AZURE_* environment, or `az login`; Reader is enough
            credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self._lookback = timedelta(seconds=lookback)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._credential = credential
        kwargs: dict[str, Any] = {
            "retry_total": retry_total,
            "connection_timeout": DEFAULT_CONNECTION_TIMEOUT,
            "read_timeout": DEFAULT_READ_TIMEOUT,
        }
        if base_url is not None:
            kwargs["base_url"] = base_url.rstrip("/")
            if urllib.parse.urlsplit(base_url).scheme == "http":
                kwargs["per_call_policies"] = [_AllowLoopbackHttp()]
        self._arm = ResourceManagementClient(credential, subscription_id, **kwargs)
        self._monitor = MonitorManagementClient(credential, subscription_id, **kwargs)
        #: (vm id, Azure metric name) → newest timestamp already emitted
        self._seen: dict[tuple[str, str], datetime] = {}
        #: vm id → Azure metric names the VM does not have
        self._missing: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ listing
    def list_vms(self) -> Iterator[_Vm]:
        """Every VM of the resource group; the SDK's pager follows ``nextLink`` across pages."""
        pages = self._arm.resources.list_by_resource_group(self.resource_group, filter=VM_FILTER)
        for res in pages:
            if (res.type or "").lower() == VM_RESOURCE_TYPE.lower() and res.id and res.name:
                yield _Vm(res.name, res.id)

    # ------------------------------------------------------------------ collection
    def collect(self) -> Collection:
        out = Collection()
        now = self._clock()
        timespan = f"{format_ts(now - self._lookback)}/{format_ts(now)}"
        try:
            vms = list(self.list_vms())
        except ResourceNotFoundError:
            raise ConfigError(
                f"Azure resource group {self.resource_group!r} not found in subscription {self.subscription_id}; fix RQP_AZURE_RESOURCE_GROUP"
            ) from None
        except ClientAuthenticationError as exc:
            raise self._access_error("list the VMs of", exc) from None
        except HttpResponseError as exc:
            if exc.status_code == 403:
                raise self._access_error("list the VMs of", exc) from None
            out.warnings.append(
                f"Azure: cannot list VMs of resource group {self.resource_group} ({self._reason(exc)}); retrying next cycle"
            )
            return out
        except (ServiceRequestError, ServiceResponseError) as exc:
            out.warnings.append(f"Azure: cannot reach ARM to list VMs ({self._reason(exc)}); retrying next cycle")
            return out
        for vm in vms:
            out.extend(self._collect_vm(vm, timespan, now))
        return out

    def _collect_vm(self, vm: _Vm, timespan: str, now: datetime) -> Collection:
        out = Collection()
        wanted = [n for n in AZURE_METRICS if n not in self._missing.get(vm.id, set())]
        if not wanted:
            return out
        try:
            out.extend(self._query(vm, wanted, timespan))
            return out
        except HttpResponseError as exc:
            if not _is_metric_not_found(exc):
                return self._vm_failed(vm, exc, now)
        except (ServiceRequestError, ServiceResponseError) as exc:
            return self._vm_unreachable(vm, exc, now)
        # one of the metrics does not exist for this VM: ask one by one to keep the others
        for name in wanted:
            try:
                out.extend(self._query(vm, [name], timespan))
            except HttpResponseError as exc:
                if _is_metric_not_found(exc):
                    self._missing.setdefault(vm.id, set()).add(name)
                    self._warn(
                        out, vm.name, now, f"metric {name!r} does not exist for VM {vm.name} (MetricNotFound); skipped"
                    )
                    continue
                out.extend(self._vm_failed(vm, exc, now))
                return out
            except (ServiceRequestError, ServiceResponseError) as exc:
                out.extend(self._vm_unreachable(vm, exc, now))
                return out
        return out

    def _query(self, vm: _Vm, names: list[str], timespan: str) -> Collection:
        out = Collection()
        resp = self._monitor.metrics.list(
            vm.id,
            timespan=timespan,
            interval=METRICS_INTERVAL,
            metricnames=",".join(names),
            aggregation=AGGREGATIONS,
            api_version=METRICS_API_VERSION,
        )
        period = _duration_seconds(getattr(resp, "interval", None), 60.0)
        for metric in resp.value or []:
            az_name = metric.name.value if metric.name else None
            spec = AZURE_METRICS.get(az_name) if az_name else None
            if az_name is None or spec is None:
                continue
            if metric.error_code and metric.error_code != "Success":
                out.warnings.append(
                    f"Azure: metric {az_name!r} of VM {vm.name}: {metric.error_code} {metric.error_message or ''}".strip()
                )
                continue
            key = (vm.id, az_name)
            seen = self._seen.get(key)
            newest = seen
            for series in metric.timeseries or []:
                for point in series.data or []:
                    value = getattr(point, spec.aggregation)
                    ts = point.time_stamp
                    if value is None or ts is None:
                        continue  # not aggregated yet; it appears in a later cycle
                    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
                    if seen is not None and ts <= seen:
                        continue
                    out.samples.append(Sample(ts, vm.name, SOURCE_AZURE, spec.metric, float(value), spec.unit, period))
                    newest = ts if newest is None or ts > newest else newest
            if newest is not None:
                self._seen[key] = newest
        return out

    # ------------------------------------------------------------------ failures
    def _vm_failed(self, vm: _Vm, exc: HttpResponseError, now: datetime) -> Collection:
        out = Collection()
        if isinstance(exc, ResourceNotFoundError) or exc.status_code == 404:
            self._warn(out, vm.name, now, f"VM {vm.name} not found (404; deleted since listing?); skipped")
        elif isinstance(exc, ClientAuthenticationError) or exc.status_code == 403:
            raise self._access_error(f"read metrics of VM {vm.name} in", exc) from None
        elif exc.status_code == 429:
            self._warn(
                out,
                vm.name,
                now,
                f"Azure Monitor still throttling VM {vm.name} after retries (429); caught up next cycle",
            )
        else:
            self._warn(
                out, vm.name, now, f"metrics of VM {vm.name} unavailable ({self._reason(exc)}); caught up next cycle"
            )
        return out

    def _vm_unreachable(self, vm: _Vm, exc: Exception, now: datetime) -> Collection:
        out = Collection()
        self._warn(
            out,
            vm.name,
            now,
            f"cannot reach Azure Monitor for VM {vm.name} ({self._reason(exc)}); caught up next cycle",
        )
        return out

    def _warn(self, out: Collection, vm: str, now: datetime, text: str) -> None:
        out.warnings.append(f"Azure: {text}")
        out.samples.append(Sample(now, vm, SOURCE_AZURE, COLLECTOR_WARNING, 1.0, "Count", note=text))

    def _access_error(self, what: str, exc: Exception) -> ConfigError:
        if getattr(exc, "status_code", None) is None:  # no token at all: the credential chain failed
            return ConfigError(
                f"no Azure credentials to {what} resource group {self.resource_group} ({self._reason(exc)}); "
                f"use a managed identity, set AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, or run 'az login'"
            )
        return ConfigError(
            f"Azure refused to {what} resource group {self.resource_group} ({self._reason(exc)}); "
            f"give the logger's identity the Reader role on the resource group, or fix its credentials"
        )

    @staticmethod
    def _reason(exc: Exception) -> str:
        status = getattr(exc, "status_code", None)
        code = _error_code(exc) if isinstance(exc, HttpResponseError) else ""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return " ".join(p for p in (f"HTTP {status}" if status else "", code, "" if code else first[:160]) if p)

    def close(self) -> None:
        for c in (self._arm, self._monitor):
            c.close()
        close = getattr(self._credential, "close", None)
        if callable(close):
            close()
