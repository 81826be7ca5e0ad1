"""Run Azurite, the official Azure Storage emulator, for tests: free ports, readiness by polling
the sockets against a deadline, and a clean stop.

Azurite is installed by ``tools/install-azurite.sh`` into ``<repo>/.tools`` (pinned 3.35.0:
3.36+ needs Node 22). The flags are the ones measured in the shared README; without
``--skipApiVersionCheck`` every call fails because the SDKs send a newer x-ms-version.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["DEV_ACCOUNT", "DEV_KEY", "START_TIMEOUT", "Azurite", "find_azurite"]

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / ".tools" / "node_modules" / ".bin" / "azurite"
#: Azurite's development account and its well-known key (published in Azurite's documentation;
#: it only ever opens the local emulator)
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"
#: ready is ~1.5 s on 2 cores; allow for a loaded CI machine
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
FLAGS = ("--inMemoryPersistence", "--loose", "--silent", "--disableTelemetry", "--skipApiVersionCheck")


def find_azurite() -> Path:
    if not os.access(AZURITE_BIN, os.X_OK):
        raise RuntimeError(f"azurite not found at {AZURITE_BIN}; run tools/install-azurite.sh first")
    return AZURITE_BIN


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class Azurite:
    """One Azurite process (blob, queue and table services) on free loopback ports.

    ``restart()`` keeps the ports, so clients built before an outage can be shown to recover.
    Data lives in memory and is lost on restart.
    """

    def __init__(self, binary: Path | None = None) -> None:
        self.binary = binary or find_azurite()
        self.blob_port = free_port()
        self.queue_port = free_port()
        self.table_port = free_port()  # unused, but must not collide with another instance
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        self._log = Path(self._workdir.name) / "azurite.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def blob_endpoint(self) -> str:
        return f"http://{HOST}:{self.blob_port}/{DEV_ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return f"http://{HOST}:{self.queue_port}/{DEV_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={self.blob_endpoint};QueueEndpoint={self.queue_endpoint};"
        )

    def start(self) -> Azurite:
        cmd = [
            str(self.binary),
            "--blobHost", HOST, "--blobPort", str(self.blob_port),
            "--queueHost", HOST, "--queuePort", str(self.queue_port),
            "--tableHost", HOST, "--tablePort", str(self.table_port),
            *FLAGS,
        ]  # fmt: skip
        with open(self._log, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                cmd, cwd=self._workdir.name, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not (port_open(self.blob_port) and port_open(self.queue_port)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"azurite exited with {self.proc.returncode} at start: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                ports = f"{self.blob_port}/{self.queue_port}"
                raise RuntimeError(f"azurite did not open ports {ports} within {START_TIMEOUT}s: {self._log_tail()}")
            time.sleep(POLL_INTERVAL)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self.proc = None
        deadline = time.monotonic() + STOP_TIMEOUT
        while port_open(self.blob_port) or port_open(self.queue_port):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"azurite ports {self.blob_port}/{self.queue_port} still open {STOP_TIMEOUT}s after stop"
                )
            time.sleep(POLL_INTERVAL)

    def restart(self) -> Azurite:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        self._workdir.cleanup()

    def _log_tail(self) -> str:
        try:
            return " | ".join(self._log.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
