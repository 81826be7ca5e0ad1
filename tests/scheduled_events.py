"""A stand-in for Azure's Scheduled Events endpoint (the instance metadata service), on loopback.

No emulator of the metadata service exists, and a test must never send a request to the
link-local metadata address: this small threaded HTTP server serves the documented document
(``DocumentIncarnation``, ``Events`` with ``EventId``, ``EventStatus``, ``EventType``,
``ResourceType``, ``Resources``, ``NotBefore`` as an RFC 1123 time, ``DurationInSeconds``,
``EventSource``) at ``/metadata/scheduledevents`` and records each ``StartRequests`` POST, so a
test announces an eviction with ``announce()`` and asserts on ``acknowledged()``. Like the real
service it answers only requests with the header ``Metadata: true``, and an acknowledged event
turns ``Started``. ``/metadata/instance/compute`` serves the VM's ``name`` and ``priority``
(Spot or Regular).

Run as a script (``python3 tests/scheduled_events.py --host ADDRESS``), it serves one VM's
metadata on a LAN address a test's VMs reach (``tools/test-vms.sh``: the test LAN's own address,
never the link-local one) and takes commands on stdin, one a line: ``announce TYPE SECONDS
RESOURCE...`` (prints ``announced <EventId>``) and ``clear`` (the events are over, as once the
platform has deleted the VM); it prints ``serving <url>`` first and ``acknowledged <EventId>
<epoch s>`` for each ``StartRequests``.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

__all__ = ["FakeScheduledEvents"]

#: the address the stub listens on unless told otherwise: loopback, never the metadata address
DEFAULT_HOST = "127.0.0.1"
EVENTS_PATH = "/metadata/scheduledevents"
COMPUTE_PATH = "/metadata/instance/compute"


@dataclass
class _State:
    incarnation: int = 1
    events: list[dict[str, Any]] = field(default_factory=list)
    #: (monotonic time, EventId) of each acknowledgement, in order
    acks: list[tuple[float, str]] = field(default_factory=list)
    #: GETs of the events document served
    polls: int = 0
    priority: str = "Regular"
    name: str = "fake-vm"
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: called with each acknowledged EventId (the script prints it), outside the lock
    on_ack: Callable[[str], None] | None = None


class FakeScheduledEvents:
    """``with FakeScheduledEvents() as svc: ... svc.url ...``: a free port on 127.0.0.1."""

    def __init__(
        self, priority: str = "Regular", name: str = "fake-vm", host: str = DEFAULT_HOST, port: int = 0
    ) -> None:
        if host == "169.254.169.254":
            raise ValueError("the stub never takes the link-local metadata address; give it loopback or a test LAN's")
        self.state = _State(priority=priority, name=name)
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: dict[str, Any] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.headers.get("Metadata") != "true":
                    self._reply(400, {"error": "Bad request. Required metadata header not specified"})
                    return
                path = self.path.split("?", 1)[0]
                with state.lock:
                    if path == EVENTS_PATH:
                        state.polls += 1
                        doc = {"DocumentIncarnation": state.incarnation, "Events": [dict(e) for e in state.events]}
                    elif path == COMPUTE_PATH:
                        doc = {"name": state.name, "priority": state.priority}
                    else:
                        self._reply(404, {"error": "Not found"})
                        return
                self._reply(200, doc)

            def do_POST(self) -> None:
                if self.headers.get("Metadata") != "true" or self.path.split("?", 1)[0] != EVENTS_PATH:
                    self._reply(400, {"error": "Bad request"})
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                    ids = [str(s["EventId"]) for s in body["StartRequests"]]
                except (ValueError, KeyError, TypeError):
                    self._reply(400, {"error": "Bad request"})
                    return
                with state.lock:
                    for eid in ids:
                        state.acks.append((time.monotonic(), eid))
                        for e in state.events:
                            if e["EventId"] == eid:
                                e["EventStatus"] = "Started"
                    state.incarnation += 1
                if state.on_ack is not None:
                    for eid in ids:
                        state.on_ack(eid)
                self._reply(200)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-imds", daemon=True)

    @property
    def url(self) -> str:
        """The events document's URL (what ``RQP_SCHEDULED_EVENTS_URL`` is set to)."""
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{EVENTS_PATH}?api-version=2020-07-01"

    def start(self) -> FakeScheduledEvents:
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeScheduledEvents:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def announce(
        self, event_type: str, resources: list[str], not_before_in: float = 30.0, source: str = "Platform"
    ) -> str:
        """Schedule an event for ``resources`` (VM names), due ``not_before_in`` seconds from now;
        its EventId. NotBefore is whole seconds (RFC 1123), as the service writes it."""
        eid = str(uuid.uuid4()).upper()
        not_before = email.utils.formatdate(time.time() + not_before_in, usegmt=True)
        with self.state.lock:
            self.state.events.append(
                {
                    "EventId": eid,
                    "EventStatus": "Scheduled",
                    "EventType": event_type,
                    "ResourceType": "VirtualMachine",
                    "Resources": list(resources),
                    "NotBefore": not_before,
                    "DurationInSeconds": -1,
                    "EventSource": source,
                }
            )
            self.state.incarnation += 1
        return eid

    def acknowledged(self) -> list[str]:
        """EventIds acknowledged (``StartRequests``) so far, in order."""
        with self.state.lock:
            return [eid for _, eid in self.state.acks]

    def acknowledged_at(self, event_id: str) -> float | None:
        """When (``time.monotonic()``) ``event_id`` was first acknowledged."""
        with self.state.lock:
            return next((t for t, eid in self.state.acks if eid == event_id), None)

    @property
    def polls(self) -> int:
        with self.state.lock:
            return self.state.polls

    def clear(self) -> None:
        """Every event is over (the platform deleted the VM): the document lists none again."""
        with self.state.lock:
            self.state.events.clear()
            self.state.incarnation += 1


def serve(svc: FakeScheduledEvents, commands: TextIO, out: TextIO) -> None:
    """Run ``svc`` until ``commands`` ends, acting on each line (the module's docstring)."""
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            out.write(line + "\n")
            out.flush()

    svc.state.on_ack = lambda eid: say(f"acknowledged {eid} {time.time():.3f}")
    with svc:
        say(f"serving {svc.url}")
        for line in commands:
            words = line.split()
            if not words:
                continue
            if words[0] == "announce" and len(words) >= 4:
                eid = svc.announce(words[1], words[3:], not_before_in=float(words[2]))
                say(f"announced {eid} {time.time():.3f}")
            elif words[0] == "clear":
                svc.clear()
                say("cleared")
            else:
                say(f"error: unknown command {line.strip()!r}; use 'announce TYPE SECONDS RESOURCE...' or 'clear'")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="a stand-in for Azure's Scheduled Events, commanded on stdin")
    ap.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: loopback)")
    ap.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    ap.add_argument("--name", default="fake-vm", help="compute.name the metadata says")
    ap.add_argument("--priority", default="Regular", help="compute.priority: Spot or Regular")
    args = ap.parse_args(argv)
    serve(FakeScheduledEvents(args.priority, args.name, args.host, args.port), sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
