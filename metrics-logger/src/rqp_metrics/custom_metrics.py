"""Azure Monitor custom metrics: the documented ingestion REST API, one POST per value.

    POST https://<region>.monitoring.azure.com/<resource id>/metrics
    Authorization: Bearer <token for https://monitoring.azure.com/>
    {"time": "...", "data": {"baseData": {"metric", "namespace", "dimNames", "series": [...]}}}

The identity needs the **Monitoring Metrics Publisher** role on the resource the metric is filed
under (the template grants it on the processor scale set). Throttling (429) and server errors
are retried, waiting ``Retry-After`` when the service says how long (bounded); a refused token is
a configuration error naming the role. Plain ``http`` is accepted only to a loopback address (a
test stub): a bearer token never crosses a network unencrypted.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from rqp.errors import ConfigError, RqpError

from .settings import check_https_or_loopback

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_RETRY_WAIT_SECONDS",
    "MONITORING_SCOPE",
    "CustomMetricsClient",
    "CustomMetricsError",
    "ingest_url",
    "metric_body",
]

log = logging.getLogger("rqp.metrics.custom")

#: the token audience the ingestion API accepts (the documented resource, with its slash)
MONITORING_SCOPE = "https://monitoring.azure.com//.default"
#: tries per value (the first and up to three retries)
MAX_ATTEMPTS = 4
#: the longest a Retry-After (or the backoff) is waited: the next cycle sends a fresh value anyway
MAX_RETRY_WAIT_SECONDS = 30.0
#: backoff when the service does not say how long to wait: 1 s, 2 s, 4 s
FIRST_BACKOFF_SECONDS = 1.0
REQUEST_TIMEOUT_SECONDS = 10.0
#: statuses worth another try (throttling, the service's own trouble)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class CustomMetricsError(RqpError):
    """A value could not be sent (after the retries); the logger goes on and sends the next."""

    exit_code = 5


def ingest_url(region: str, resource_id: str, base_url: str | None = None) -> str:
    """The ingestion endpoint for ``resource_id`` (``/subscriptions/.../<name>``) in ``region``;
    ``base_url`` replaces ``https://<region>.monitoring.azure.com`` (a stub)."""
    base = (base_url or f"https://{region}.monitoring.azure.com").rstrip("/")
    return f"{base}/{resource_id.strip('/')}/metrics"


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def metric_body(
    metric: str,
    namespace: str,
    value: float,
    at: datetime,
    dims: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The documented ``baseData`` document for one value (min = max = sum, count 1)."""
    series: dict[str, Any] = {"min": value, "max": value, "sum": value, "count": 1}
    base: dict[str, Any] = {"metric": metric, "namespace": namespace}
    if dims:
        base["dimNames"] = [k for k, _ in dims]
        series = {"dimValues": [v for _, v in dims], **series}
    base["series"] = [series]
    return {"time": _iso(at), "data": {"baseData": base}}


class CustomMetricsClient:
    """Posts values of custom metrics filed under one Azure resource."""

    def __init__(
        self,
        resource_id: str,
        region: str,
        *,
        namespace: str,
        credential: Any = None,
        base_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not resource_id.startswith("/subscriptions/"):
            raise ConfigError(
                f"RQP_METRICS_BACKLOG_RESOURCE_ID must be an Azure resource id (/subscriptions/...), got {resource_id!r}"
            )
        if not region and base_url is None:
            raise ConfigError(
                "RQP_METRICS_BACKLOG_REGION is needed with RQP_METRICS_BACKLOG_RESOURCE_ID (e.g. westeurope)"
            )
        if base_url is not None:
            check_https_or_loopback(base_url, "RQP_AZURE_MONITORING_URL", "https://westeurope.monitoring.azure.com")
        if credential is None:
            from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - Azure SDK only when asked

            credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        self.url = ingest_url(region, resource_id, base_url)
        self.resource_id = resource_id
        self.namespace = namespace
        self._credential = credential
        self._sleep = sleep
        self.sent = 0

    def send(self, metric: str, value: float, at: datetime, dims: Sequence[tuple[str, str]] = ()) -> None:
        """POST one value; retried on 429 and 5xx; ``CustomMetricsError`` when it still fails,
        ``ConfigError`` when the identity may not publish."""
        data = json.dumps(metric_body(metric, self.namespace, value, at, dims), separators=(",", ":")).encode()
        wait = FIRST_BACKOFF_SECONDS
        last = ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            token = self._credential.get_token(MONITORING_SCOPE).token
            req = urllib.request.Request(
                self.url,
                data=data,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            )
            retry_after: float | None = None
            try:
                with urllib.request.urlopen(
                    req, timeout=REQUEST_TIMEOUT_SECONDS
                ) as resp:  # https, or http to loopback (checked)
                    resp.read()
                self.sent += 1
                return
            except urllib.error.HTTPError as exc:
                detail = exc.read(500).decode(errors="replace")
                last = f"HTTP {exc.code} {' '.join(detail.split())[:200]}"
                if exc.code in (401, 403):
                    raise ConfigError(
                        f"Azure Monitor refused custom metric {metric} for {self.resource_id} ({last}); give the "
                        f"logger's identity the Monitoring Metrics Publisher role on that resource"
                    ) from None
                if exc.code not in RETRY_STATUSES:
                    raise CustomMetricsError(f"Azure Monitor rejected custom metric {metric} ({last})") from None
                retry_after = _seconds(exc.headers.get("Retry-After"))
            except (urllib.error.URLError, OSError) as exc:
                last = " ".join(str(getattr(exc, "reason", exc)).split())
            if attempt < MAX_ATTEMPTS:
                delay = min(MAX_RETRY_WAIT_SECONDS, retry_after if retry_after is not None else wait)
                log.warning("custom metric %s: %s; retrying in %.1fs", metric, last, delay)
                self._sleep(delay)
                wait *= 2
        raise CustomMetricsError(
            f"custom metric {metric} not sent to {self.url} after {MAX_ATTEMPTS} tries ({last}); the next cycle sends a fresh value"
        )

    def close(self) -> None:
        close = getattr(self._credential, "close", None)
        if callable(close):
            close()


def _seconds(header: str | None) -> float | None:
    """Retry-After in seconds (the service sends a number); None when absent or not a number."""
    if not header:
        return None
    try:
        value = float(header)
    except ValueError:
        return None
    return value if value >= 0 else None
