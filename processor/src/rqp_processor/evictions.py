"""Watch Azure Scheduled Events for this VM's eviction, so the processor drains before it goes.

A Spot VM is evicted with a ``Preempt`` event at least 30 s ahead (``NotBefore``); a scale set's
scale-in, with termination notification on, sends ``Terminate`` (drained too when
``RQP_DRAIN_ON_TERMINATE`` is set). The watcher polls the events document about once a second,
as the service asks, and hands the first event for this VM (``RQP_VM_NAME``, default the host
name, among the event's ``Resources``) to the supervisor, which drains (``drain``) and then
acknowledges the event (``StartRequests``) so the platform goes ahead at once.

Off unless ``RQP_SCHEDULED_EVENTS_URL`` is set: only a deployment on Azure (its deploy files)
names the link-local metadata address; tests and demos point it at a stub on loopback.
"""

from __future__ import annotations

import email.utils
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rqp.config import Settings
from rqp.vms import VmLabel

__all__ = [
    "DRAINED_TYPES",
    "FIRST_POLL_TIMEOUT_SECONDS",
    "POLL_SECONDS",
    "POLL_TIMEOUT_SECONDS",
    "EvictionWatcher",
    "Notice",
    "ScheduledEvents",
    "find_notice",
    "vm_label",
]

log = logging.getLogger("rqp.processor")

#: how often the events document is read (the service's own advice: about once a second)
POLL_SECONDS = 1.0
#: the first request turns the service on and may take up to 2 minutes to answer
FIRST_POLL_TIMEOUT_SECONDS = 120.0
#: later requests answer at once; a slow one is retried on the next poll
POLL_TIMEOUT_SECONDS = 5.0
#: event types that mean this VM goes away (Terminate only when opted in)
DRAINED_TYPES = ("Preempt", "Terminate")
#: the instance metadata's compute document (``priority``: Spot, Low or Regular)
COMPUTE_PATH = "/metadata/instance/compute"
COMPUTE_API_VERSION = "2021-02-01"


@dataclass(frozen=True)
class Notice:
    """An eviction of this VM: which event, of what type, and when the VM may go (epoch s)."""

    event_id: str
    event_type: str
    not_before: float
    #: when this processor saw it (epoch s)
    seen_at: float


def _not_before(value: object, now: float) -> float:
    """``NotBefore`` (RFC 1123) as epoch seconds; an empty or unreadable one (a started event)
    means now."""
    if not isinstance(value, str) or not value.strip():
        return now
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return now


def find_notice(doc: object, vm_name: str, types: tuple[str, ...], now: float | None = None) -> Notice | None:
    """The first event in the Scheduled Events document ``doc`` of one of ``types`` naming
    ``vm_name`` among its resources; None when there is none (a document that is not one reads
    as no event: a broken metadata answer must not stop a processor)."""
    now = time.time() if now is None else now
    events = doc.get("Events") if isinstance(doc, dict) else None
    if not isinstance(events, list):
        return None
    for e in events:
        if not isinstance(e, dict) or e.get("EventType") not in types:
            continue
        resources = e.get("Resources")
        if not isinstance(resources, list) or vm_name.lower() not in {str(x).lower() for x in resources}:
            continue
        eid = e.get("EventId")
        if not isinstance(eid, str) or not eid:
            continue
        return Notice(eid, str(e["EventType"]), _not_before(e.get("NotBefore"), now), now)
    return None


class ScheduledEvents:
    """The events endpoint at ``url`` (``RQP_SCHEDULED_EVENTS_URL``): read and acknowledge."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _request(self, url: str, body: bytes | None, timeout: float) -> Any:
        req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
        req.add_header("Metadata", "true")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        # the metadata service must be reached directly, never through a proxy from the environment
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=timeout) as resp:
            data = resp.read()
        return json.loads(data) if data.strip() else None

    def document(self, timeout: float = POLL_TIMEOUT_SECONDS) -> Any:
        return self._request(self.url, None, timeout)

    def acknowledge(self, event_id: str, timeout: float = POLL_TIMEOUT_SECONDS) -> None:
        """Tell the platform this VM is ready (``StartRequests``): the event starts now."""
        body = json.dumps({"StartRequests": [{"EventId": event_id}]}).encode()
        self._request(self.url, body, timeout)

    def compute(self, timeout: float = POLL_TIMEOUT_SECONDS) -> VmLabel | None:
        """This VM's ``compute.name`` and ``compute.priority`` (Spot or Low: "spot") from the
        instance metadata on the same host; None when it does not say."""
        parts = urllib.parse.urlsplit(self.url)
        query = urllib.parse.urlencode({"api-version": COMPUTE_API_VERSION})
        url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, COMPUTE_PATH, query, ""))
        doc = self._request(url, None, timeout)
        if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not doc["name"]:
            return None
        priority = str(doc.get("priority", "")).lower()
        return VmLabel(doc["name"], "spot" if priority in ("spot", "low") else "regular")


def vm_label(settings: Settings) -> VmLabel | None:
    """Which VM this processor runs on and whether it is Spot: ``RQP_VM_NAME`` and
    ``RQP_VM_PRIORITY``, else the instance metadata's ``compute`` when the metadata URL is set;
    None when nothing says (the host name stands for the VM then, unlabelled). The name is also
    the one Scheduled Events list in ``Resources`` (a scale set's instance name, not the host's)."""
    meta = None
    if settings.scheduled_events_url and not (settings.vm_name and settings.vm_priority):
        try:
            meta = ScheduledEvents(settings.scheduled_events_url).compute()
        except (OSError, ValueError) as exc:
            log.warning("could not read this VM's name and priority from the instance metadata (%s); set "
                        "RQP_VM_NAME and RQP_VM_PRIORITY", exc)  # fmt: skip
    name = settings.vm_name or (meta.vm if meta else "")
    priority = settings.vm_priority or (meta.priority if meta else "")
    if not (name or priority):
        return None
    return VmLabel(name or socket.gethostname(), priority)


class EvictionWatcher(threading.Thread):
    """Polls the events document; calls ``on_notice`` once, with the first eviction of this VM."""

    def __init__(
        self,
        events: ScheduledEvents,
        vm_name: str,
        on_notice: Callable[[Notice], None],
        *,
        drain_on_terminate: bool = False,
        interval: float = POLL_SECONDS,
    ) -> None:
        super().__init__(name="rqp-evictions", daemon=True)
        self.events = events
        self.vm_name = vm_name
        self.on_notice = on_notice
        self.types = DRAINED_TYPES if drain_on_terminate else ("Preempt",)
        self.interval = interval
        self.notice: Notice | None = None
        self._stopping = threading.Event()
        self._failing = False

    @classmethod
    def from_settings(
        cls, settings: Settings, on_notice: Callable[[Notice], None], vm_name: str | None = None
    ) -> EvictionWatcher | None:
        """The watcher the settings ask for, for VM ``vm_name`` (``vm_label``; default
        ``RQP_VM_NAME`` or the host name); None when ``RQP_SCHEDULED_EVENTS_URL`` is unset."""
        if not settings.scheduled_events_url:
            return None
        return cls(
            ScheduledEvents(settings.scheduled_events_url),
            vm_name or settings.vm_name or socket.gethostname(),
            on_notice,
            drain_on_terminate=settings.drain_on_terminate,
        )

    def poll(self, timeout: float = POLL_TIMEOUT_SECONDS) -> Notice | None:
        """One read of the document; the eviction of this VM it announces, if any."""
        try:
            doc = self.events.document(timeout)
        except (OSError, ValueError) as exc:  # an outage of the metadata service: try again next poll
            if not self._failing:
                log.warning("scheduled events at %s could not be read (%s); retrying every %gs",
                            self.events.url, exc, self.interval)  # fmt: skip
            self._failing = True
            return None
        if self._failing:
            log.warning("scheduled events at %s can be read again", self.events.url)
            self._failing = False
        return find_notice(doc, self.vm_name, self.types)

    def run(self) -> None:
        timeout = FIRST_POLL_TIMEOUT_SECONDS
        while not self._stopping.is_set():
            notice = self.poll(timeout)
            timeout = POLL_TIMEOUT_SECONDS
            if notice is not None:
                self.notice = notice
                self.on_notice(notice)
                return
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        self._stopping.set()
