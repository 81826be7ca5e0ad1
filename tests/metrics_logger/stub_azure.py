"""A local stand-in for Azure Resource Manager and Azure Monitor, for the metrics logger's tests.

It implements just what the logger calls, in the documented shapes:

* ``GET /subscriptions/{sub}/resourcegroups/{rg}/resources`` (ARM resource listing): honours the
  ``resourceType eq '...'`` ``$filter``, pages ``page_size`` resources at a time with an absolute
  ``nextLink`` carrying ``$skiptoken``; an unknown resource group is ``404 ResourceGroupNotFound``.
* ``GET /{vm resource id}/providers/Microsoft.Insights/metrics`` (Metrics - List, api-version
  2024-02-01): ``value[].name.value``, ``unit``, ``timeseries[].data[].timeStamp/average/total``,
  one point per minute of ``timespan``; the newest minute has no aggregate yet, as in Azure.

Switches, settable before or between requests:

* ``throttle[vm] = n``: the first n metrics requests for that VM get ``429`` with ``Retry-After``;
* ``gone``: VMs that are listed but whose metrics request is ``404 ResourceNotFound``;
* ``missing_metrics[vm]``: metric names answered with ``400 MetricNotFound``;
* ``denied``: every request is ``403 AuthorizationFailed`` (an identity without Reader).

Every request is recorded (``requests``) with its status and a monotonic time, so tests can
prove, for example, that a VM's data arrived after a 429 and not before ``Retry-After``.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from azure.core.credentials import AccessToken

from .stub_http import LoopbackStub, send_json

METRICS_API_VERSION = "2024-02-01"
TOKEN = "stub-token"
VM_TYPE = "Microsoft.Compute/virtualMachines"

#: the VM metrics the stub knows, with their Azure unit
VM_METRICS = {
    "Percentage CPU": "Percent",
    "Disk Read Bytes": "Bytes",
    "Disk Write Bytes": "Bytes",
    "Disk Read Operations/Sec": "CountPerSecond",
    "Disk Write Operations/Sec": "CountPerSecond",
    "Network In Total": "Bytes",
    "Network Out Total": "Bytes",
}


class FakeCredential:
    """A TokenCredential: all the SDK needs is ``get_token``."""

    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(TOKEN, int(time.time()) + 3600)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def minute_values(vm_index: int, metric: str, ts: datetime) -> dict[str, float]:
    """Deterministic data: tests compute the same numbers to check what was stored."""
    m = ts.minute
    n = vm_index + 1
    if metric == "Percentage CPU":
        avg = 10.0 * n + (m % 3)
        return {"average": avg, "minimum": avg - 1, "maximum": avg + 1, "total": avg * 4, "count": 4}
    if metric.endswith("Operations/Sec"):
        avg = 5.5 * n + (1 if "Write" in metric else 0)
        return {"average": avg, "total": avg * 60, "count": 1}
    base = {
        "Disk Read Bytes": 1_000_000,
        "Disk Write Bytes": 3_000_000,
        "Network In Total": 2_000_000,
        "Network Out Total": 500_000,
    }[metric]
    total = float(base * n + m)
    return {"average": total, "total": total, "count": 1}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float
    vm: str | None = None


@dataclass
class AzureStub(LoopbackStub):
    subscription: str = "00000000-0000-0000-0000-000000000001"
    resource_group: str = "rg-rqp"
    vms: tuple[str, ...] = ("vm-a", "vm-b", "vm-c")
    #: other resources in the group, which the VM filter must leave out
    others: tuple[tuple[str, str], ...] = (
        ("Microsoft.Storage/storageAccounts", "rqpdata"),
        ("Microsoft.Network/networkInterfaces", "vm-a-nic"),
    )
    page_size: int = 2
    retry_after: int = 1
    throttle: dict[str, int] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    missing_metrics: dict[str, set[str]] = field(default_factory=dict)
    denied: bool = False
    requests: list[Recorded] = field(default_factory=list)

    thread_name = "azure-stub"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ helpers
    def vm_id(self, name: str) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/{VM_TYPE}/{name}"

    def metric_requests(self, vm: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path.lower().endswith("/providers/microsoft.insights/metrics") and (vm is None or r.vm == vm)
            ]

    def listing_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.lower().endswith("/resources")]

    def _resources(self) -> list[dict[str, Any]]:
        out = [{"id": self.vm_id(v), "name": v, "type": VM_TYPE, "location": "westeurope"} for v in self.vms]
        for typ, name in self.others:
            out.append(
                {
                    "id": f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/{typ}/{name}",
                    "name": name,
                    "type": typ,
                    "location": "westeurope",
                }
            )
        return out

    # ------------------------------------------------------------------ request handling
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(h.path)
        path = "/" + parts.path.lstrip("/")
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items()}
        rec = Recorded("GET", path, query, 0, time.monotonic())
        status, body, headers = self._route(h, path, query, rec)
        rec.status = status
        with self._lock:
            self.requests.append(rec)
        headers = {"x-ms-request-id": f"stub-{len(self.requests)}", **headers}
        send_json(h, status, body, headers, content_type="application/json; charset=utf-8")

    @staticmethod
    def _error(
        status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict, dict[str, str]]:
        return status, {"error": {"code": code, "message": message}}, headers or {}

    def _route(
        self, h: BaseHTTPRequestHandler, path: str, query: dict[str, str], rec: Recorded
    ) -> tuple[int, dict, dict[str, str]]:
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._error(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing or invalid."
            )
        if self.denied:
            return self._error(
                403,
                "AuthorizationFailed",
                "The client does not have authorization to perform action 'Microsoft.Resources/subscriptions/resourceGroups/resources/read'.",
            )
        low = path.lower()
        list_prefix = f"/subscriptions/{self.subscription}/resourcegroups/".lower()
        if low.startswith(list_prefix) and low.endswith("/resources"):
            return self._list(path, query)
        if low.endswith("/providers/microsoft.insights/metrics"):
            return self._metrics(path[: -len("/providers/Microsoft.Insights/metrics")], query, rec)
        return self._error(404, "NotFound", f"no route for {path}")

    def _list(self, path: str, query: dict[str, str]) -> tuple[int, dict, dict[str, str]]:
        rg = path.split("/")[4]
        if rg.lower() != self.resource_group.lower():
            return self._error(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
        resources = self._resources()
        flt = query.get("$filter")
        if flt:
            want = flt.split("eq", 1)[1].strip().strip("'") if "resourceType eq" in flt else None
            resources = [r for r in resources if want is None or r["type"].lower() == want.lower()]
        skip = int(query.get("$skiptoken", "0"))
        page = resources[skip : skip + self.page_size]
        body: dict[str, Any] = {"value": page}
        if skip + self.page_size < len(resources):
            q = dict(query, **{"$skiptoken": str(skip + self.page_size)})
            body["nextLink"] = f"{self.url}{path}?{urllib.parse.urlencode(q)}"
        return 200, body, {}

    def _metrics(self, resource_id: str, query: dict[str, str], rec: Recorded) -> tuple[int, dict, dict[str, str]]:
        if query.get("api-version") != METRICS_API_VERSION:
            return self._error(
                400,
                "InvalidApiVersionParameter",
                f"api-version {query.get('api-version')!r} is not {METRICS_API_VERSION}",
            )
        name = resource_id.rstrip("/").rsplit("/", 1)[-1]
        rec.vm = name
        if name not in self.vms or name in self.gone or resource_id.lower() != self.vm_id(name).lower():
            return self._error(
                404,
                "ResourceNotFound",
                f"The Resource '{VM_TYPE}/{name}' under resource group '{self.resource_group}' was not found.",
            )
        with self._lock:
            left = self.throttle.get(name, 0)
            if left > 0:
                self.throttle[name] = left - 1
        if left > 0:
            return self._error(
                429, "TooManyRequests", "The request is being throttled.", {"Retry-After": str(self.retry_after)}
            )
        names = [n for n in query.get("metricnames", "").split(",") if n]
        for n in names:
            if n not in VM_METRICS or n in self.missing_metrics.get(name, set()):
                return self._error(
                    400,
                    "MetricNotFound",
                    f"Failed to find metric configuration for provider: Microsoft.Compute, resource Type: virtualMachines, metric: {n}",
                )
        if query.get("interval", "PT1M") != "PT1M":
            return self._error(400, "BadRequest", "the stub serves PT1M only")
        start_s, end_s = query["timespan"].split("/")
        start, end = parse_time(start_s), parse_time(end_s)
        first = start.replace(second=0, microsecond=0) + (
            timedelta(minutes=1) if start.second or start.microsecond else timedelta()
        )
        minutes = []
        t = first
        while t < end:
            minutes.append(t)
            t += timedelta(minutes=1)
        aggs = [a.strip().lower() for a in query.get("aggregation", "average").split(",")]
        vm_index = self.vms.index(name)
        value = []
        for n in names:
            data = []
            for i, ts in enumerate(minutes):
                point: dict[str, Any] = {"timeStamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ")}
                if i < len(minutes) - 1:  # the newest minute is not aggregated yet
                    vals = minute_values(vm_index, n, ts)
                    point.update({a: vals[a] for a in aggs if a in vals})
                data.append(point)
            value.append(
                {
                    "id": f"{resource_id}/providers/Microsoft.Insights/metrics/{n}",
                    "type": "Microsoft.Insights/metrics",
                    "name": {"value": n, "localizedValue": n},
                    "displayDescription": f"{n} of the virtual machine",
                    "unit": VM_METRICS[n],
                    "timeseries": [{"metadatavalues": [], "data": data}],
                    "errorCode": "Success",
                }
            )
        return (
            200,
            {
                "cost": len(minutes) * max(len(names), 1),
                "timespan": query["timespan"],
                "interval": "PT1M",
                "namespace": "Microsoft.Compute/virtualMachines",
                "resourceregion": "westeurope",
                "value": value,
            },
            {},
        )
