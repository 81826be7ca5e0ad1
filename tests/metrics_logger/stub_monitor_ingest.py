"""A local stand-in for Azure Monitor's custom metrics ingestion API, for the backlog metric's tests.

``POST /{resource id}/metrics`` (the documented ``https://<region>.monitoring.azure.com`` path)
with a bearer token and the documented body::

    {"time": "...", "data": {"baseData": {"metric", "namespace", "dimNames"?, "series": [
        {"dimValues"?, "min", "max", "sum", "count"}]}}}

A body not of that shape is ``400 InvalidPayload``, as the service answers. Switches:
``throttle = n`` answers the next n posts ``429`` with ``Retry-After: retry_after``; ``denied``
answers ``403``. Every post is recorded with its status, headers, body and a monotonic time.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from azure.core.credentials import AccessToken

from .stub_http import LoopbackStub, send_json

TOKEN = "stub-monitoring-token"


class ScopedCredential:
    """A TokenCredential that records the scopes it was asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    at: float


def payload_problem(body: Any) -> str | None:
    """What is wrong with a body by the documented schema; None when it is right."""
    if not isinstance(body, dict) or set(body) != {"time", "data"}:
        return "the body must have exactly time and data"
    if not isinstance(body["time"], str) or not body["time"].endswith("Z"):
        return "time must be an ISO-8601 UTC string"
    base = body["data"].get("baseData") if isinstance(body["data"], dict) else None
    if not isinstance(base, dict):
        return "data.baseData is missing"
    for key in ("metric", "namespace"):
        if not isinstance(base.get(key), str) or not base[key]:
            return f"baseData.{key} must be a non-empty string"
    dims = base.get("dimNames", [])
    series = base.get("series")
    if not isinstance(series, list) or not series:
        return "baseData.series must be a non-empty list"
    for s in series:
        if len(s.get("dimValues", [])) != len(dims):
            return "each series needs one dimValue per dimName"
        for key in ("min", "max", "sum", "count"):
            if not isinstance(s.get(key), (int, float)):
                return f"series.{key} must be a number"
    return None


@dataclass
class MonitorIngestStub(LoopbackStub):
    retry_after: int = 1
    throttle: int = 0
    denied: bool = False
    posts: list[Post] = field(default_factory=list)

    methods = ("POST",)
    thread_name = "monitor-stub"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def accepted(self) -> list[Post]:
        with self._lock:
            return [p for p in self.posts if p.status == 200]

    def values(self) -> dict[str, float]:
        """The newest accepted value of each metric."""
        return {
            p.body["data"]["baseData"]["metric"]: p.body["data"]["baseData"]["series"][0]["sum"]
            for p in self.accepted()
        }

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length", "0")))
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        status, answer, extra = self._route(h, body)
        with self._lock:
            self.posts.append(Post(h.path, dict(h.headers.items()), body, status, time.monotonic()))
        send_json(h, status, answer, extra)

    def _route(self, h: BaseHTTPRequestHandler, body: Any) -> tuple[int, dict, dict[str, str]]:
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"error": {"code": "InvalidToken", "message": "missing or invalid bearer token"}}, {}
        if not (h.path.startswith("/subscriptions/") and h.path.endswith("/metrics")):
            return 404, {"error": {"code": "NotFound", "message": f"no route for {h.path}"}}, {}
        if self.denied:
            return 403, {"error": {"code": "Forbidden", "message": "no Monitoring Metrics Publisher role"}}, {}
        with self._lock:
            throttled = self.throttle > 0
            if throttled:
                self.throttle -= 1
        if throttled:
            return (
                429,
                {"error": {"code": "TooManyRequests", "message": "throttled"}},
                {"Retry-After": str(self.retry_after)},
            )
        if h.headers.get("Content-Type") != "application/json":
            return 415, {"error": {"code": "UnsupportedMediaType", "message": "application/json only"}}, {}
        problem = payload_problem(body)
        if problem:
            return 400, {"error": {"code": "InvalidPayload", "message": problem}}, {}
        return 200, {}, {}
