"""What the metrics logger's stand-ins for Azure services share: a threaded HTTP/1.1 server on
loopback that hands each request to the stub, and a JSON answer.

Why one place: the Azure Resource Manager / Monitor stub (``stub_azure``) and the custom metrics
ingestion stub (``stub_monitor_ingest``) had each their own copy of the server's start, stop and
URL and of the answer's writing; a fix to one (the Nagle stall, the poll interval) must reach both.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

__all__ = ["LoopbackStub", "send_json"]

#: how often the server looks whether it was told to stop (seconds)
POLL_SECONDS = 0.05


def send_json(
    h: BaseHTTPRequestHandler,
    status: int,
    answer: Any,
    headers: dict[str, str],
    content_type: str = "application/json",
) -> None:
    """Answer the request ``h`` with ``status``, ``answer`` as JSON and ``headers``."""
    data = json.dumps(answer).encode()
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(data)))
    for k, v in headers.items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)


class LoopbackStub:
    """A stub service on ``127.0.0.1`` (a free port): ``start``, ``url``, ``stop``. A subclass
    names the methods it answers (``methods``; any other is ``501``) and answers in ``_handle``."""

    #: the HTTP methods the stub answers
    methods: ClassVar[tuple[str, ...]] = ("GET",)
    #: its server thread's name
    thread_name: ClassVar[str] = "stub"
    _server: ThreadingHTTPServer | None = None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out separately: no 40 ms delayed-ACK stalls

            def do_GET(self) -> None:
                if self.command in stub.methods:
                    stub._handle(self)
                else:
                    self.send_error(501)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_SECONDS},
            name=self.thread_name,
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"
