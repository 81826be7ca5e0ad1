"""Helpers for the attack tests: forging RQ jobs the way an intruder with Redis access would,
polling real state with deadlines, and reading one-line errors from the real programs."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from world import cli_env, proc, world  # noqa: F401 - fixtures (the in-process world of tests/world.py)

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "rqp"  # Settings' default RQ queue
TERMINAL = {b"finished", b"failed", b"stopped", b"canceled"}


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    on_timeout: Callable[[], str] | None = None,
) -> Any:
    """Poll real state until ``predicate()`` is truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{extra}")
        time.sleep(0.02)


def one_error_line(cp: subprocess.CompletedProcess, prog: str) -> str:
    """The single ``<prog>: error: ...`` line a failing rqp program prints, and nothing else."""
    lines = [
        ln
        for ln in cp.stderr.decode(errors="replace").splitlines() + cp.stdout.decode(errors="replace").splitlines()
        if ln.strip()
    ]
    errors = [ln for ln in lines if ln.startswith(f"{prog}: error: ")]
    assert len(errors) == 1, f"expected one '{prog}: error:' line, got:\n" + "\n".join(lines)
    assert "Traceback" not in "\n".join(lines), "\n".join(lines)
    return errors[0]


def _rq_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_data(func_name: str, args: list[Any], instance: Any = None, kwargs: dict | None = None) -> bytes:
    """RQ's job payload as rqp's JSON serializer writes it: (func_name, instance, args, kwargs)."""
    return json.dumps([func_name, instance, args, kwargs or {}]).encode()


def push_raw_job(
    r: redis.Redis, jid: str, data: bytes, *, queue: str = QUEUE, compress: bool = True, **fields: Any
) -> str:
    """Write a job straight into Redis -- a hash and an id on the queue list, no RQ library --
    the way anyone holding the Redis password could."""
    now = _rq_time()
    mapping: dict[str, Any] = {
        "data": zlib.compress(data) if compress else data,
        "status": "queued",
        "origin": queue,
        "created_at": now,
        "enqueued_at": now,
        "description": "not from rqp",
        "timeout": "60",
        **fields,
    }
    pipe = r.pipeline(transaction=True)
    pipe.delete(f"rq:job:{jid}")
    pipe.hset(f"rq:job:{jid}", mapping=mapping)
    pipe.sadd("rq:queues", f"rq:queue:{queue}")
    pipe.rpush(f"rq:queue:{queue}", jid)
    pipe.execute()
    return jid


def job_state(r: redis.Redis, jid: str) -> tuple[bytes | None, bool]:
    """(status, exists) of an RQ job hash."""
    status = r.hget(f"rq:job:{jid}", "status")
    return status, status is not None or bool(r.exists(f"rq:job:{jid}"))


def wait_job_done(r: redis.Redis, jid: str, timeout: float = 30.0, logs: Callable[[], str] | None = None) -> bytes:
    """Wait until a worker has finished with the job: terminal status, or the hash deleted
    (a successful job with result_ttl 0). Returns the status (b"gone" when deleted)."""

    def done() -> bytes | None:
        status, exists = job_state(r, jid)
        if not exists:
            return b"gone"
        return status if status in TERMINAL else None

    return wait_until(done, timeout, f"a worker to finish job {jid}", logs)


def exc_info(r: redis.Redis, jid: str) -> str:
    """The failure RQ recorded for a job (its traceback, last line first matters)."""
    raw = r.hget(f"rq:job:{jid}", "exc_info")
    if raw is None:
        # RQ 2+ keeps results (including failures) in a stream per job
        entries = r.xrevrange(f"rq:results:{jid}", count=1)
        if entries:
            raw = entries[0][1].get(b"exc_string")
    if raw is None:
        return ""
    for decode in (zlib.decompress, lambda b: zlib.decompress(base64.b64decode(b)), lambda b: b):
        try:
            return decode(raw).decode(errors="replace")
        except (zlib.error, ValueError):
            continue
    return ""


def rejected(r: redis.Redis) -> list[dict[str, Any]]:
    """Entries of ``rqp:rejected``, newest first."""
    return [json.loads(x) for x in r.lrange("rqp:rejected", 0, -1)]


def rejection_for(r: redis.Redis, jid: str) -> dict[str, Any] | None:
    for entry in rejected(r):
        if entry.get("job") == jid:
            return entry
    return None


@pytest.fixture
def marker_dir(tmp_path) -> Path:
    d = tmp_path / "markers"
    d.mkdir()
    return d
