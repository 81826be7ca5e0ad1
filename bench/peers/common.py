"""The realistic job, identical for every peer.

One job = one ~1 KB record (``examples/make_data.py``), sealed with AES-256-GCM under a key the
benchmark makes per run, AAD binding the record id. The job:

1. decrypts the record (AES-256-GCM, AAD ``bench/record|<id>``) and parses its JSON,
2. runs ``process(record)`` -- the very function of ``examples/process.py``, loaded from that
   file, which is also the script rqp runs (a SHA-256 of one field and some arithmetic),
3. encrypts the JSON result (AES-256-GCM, AAD ``bench/result|<id>``),
4. ``SET bench:res:<id> <sealed result>`` and ``HSET bench:status <id> done``, both in one
   pipelined round trip (the cheapest a careful user would write).

rqp does the same per record plus more (a sealed status record per state change, a results part
per chunk, status messages, leases, retries): its numbers are measured through its real programs.

Environment: ``BENCH_REDIS_URL``, ``BENCH_KEY`` (64 hex digits); ``BENCH_BURN_SECONDS`` makes
``process()`` burn that much CPU per record first (the efficiency rows: a script of a real cost),
exactly as rqp's script does in those rows (``burn_script``).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import threading
from pathlib import Path

import redis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

REPO = Path(__file__).resolve().parents[2]
STATUS = "bench:status"
RESULT = "bench:res:"
QUEUE = "bench"

_spec = importlib.util.spec_from_file_location("bench_process", REPO / "examples" / "process.py")
_mod = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_mod)  # type: ignore[union-attr]
#: the CPU a burning process() spends before scoring (``BENCH_BURN_SECONDS``; 0: none)
BURN_SECONDS = float(os.environ.get("BENCH_BURN_SECONDS", "0") or 0)
#: appended to examples/process.py for rqp's script in the efficiency rows; the peers run the same
#: code (``_burning``), so every system's process() costs the same CPU per record
BURN_SUFFIX = """

import time as _burn_time

_score = process
BURN_SECONDS = {seconds!r}


def process(record):
    # this thread's CPU clock: the cost is CPU spent, whatever else the machine runs
    end = _burn_time.thread_time() + BURN_SECONDS
    while _burn_time.thread_time() < end:
        pass
    return _score(record)
"""


def burn_script(seconds: float) -> str:
    """examples/process.py with ``process()`` burning ``seconds`` of CPU per record first."""
    return (REPO / "examples" / "process.py").read_text() + BURN_SUFFIX.format(seconds=seconds)


def _burning(seconds: float):  # type: ignore[no-untyped-def]
    namespace: dict[str, object] = {}
    exec(compile(burn_script(seconds), "burn_process", "exec"), namespace)  # noqa: S102 - the repo's own example
    return namespace["process"]


process = _burning(BURN_SECONDS) if BURN_SECONDS else _mod.process

_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def record_aad(rid: int) -> bytes:
    return b"bench/record|%d" % rid


def result_aad(rid: int) -> bytes:
    return b"bench/result|%d" % rid


def seal(aead: AESGCM, plaintext: bytes, ad: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + aead.encrypt(nonce, plaintext, ad)


def open_sealed(aead: AESGCM, sealed: bytes, ad: bytes) -> bytes:
    return aead.decrypt(sealed[:12], sealed[12:], ad)


class Job:
    """Per process: the key and one Redis client (created lazily, so it is made after a fork)."""

    def __init__(self) -> None:
        self.aead = AESGCM(bytes.fromhex(os.environ["BENCH_KEY"]))
        self.url = os.environ["BENCH_REDIS_URL"]
        self._r: redis.Redis | None = None
        self._pid = 0
        self._lock = threading.Lock()

    @property
    def r(self) -> redis.Redis:
        """One client per process (thread-safe: its connection pool serves every thread)."""
        if self._r is None or self._pid != os.getpid():
            with self._lock:
                if self._r is None or self._pid != os.getpid():
                    self._r = redis.Redis.from_url(self.url)
                    self._pid = os.getpid()
        return self._r

    def compute(self, rid: int, sealed: bytes) -> bytes:
        """Decrypt, process, encrypt: the CPU part of the job."""
        record = json.loads(open_sealed(self.aead, sealed, record_aad(rid)))
        result = process(record)
        return seal(self.aead, _ENCODE(result).encode(), result_aad(rid))

    def run(self, rid: int, sealed_b64: str) -> None:
        """The whole job, as every peer runs it."""
        out = self.compute(rid, base64.b64decode(sealed_b64))
        pipe = self.r.pipeline(transaction=False)
        pipe.set(RESULT + str(rid), out)
        pipe.hset(STATUS, rid, "done")
        pipe.execute()


_JOB: Job | None = None


def job() -> Job:
    global _JOB
    if _JOB is None:
        _JOB = Job()
    return _JOB
