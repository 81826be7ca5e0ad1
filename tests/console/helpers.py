"""The console under test: the real ``rqp-console`` program on a free port, and an HTTP client
that logs in the way a browser does (the login form's CSRF token, the session cookie, an Origin
header on every POST)."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from harness import bin_path, stop_process_groups
from redis_server import free_port

PASSWORD = "correct horse battery staple 42"
USER = "operator"


class ConsoleServer:
    """``rqp-console`` as a subprocess; ``stop`` ends it (and nothing else)."""

    def __init__(self, root: Path, redis_url: str, env: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        pw = self.root / "console_password"
        pw.write_text(PASSWORD + "\n")
        pw.chmod(0o600)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RQP_")},
            "RQP_REDIS_URL": redis_url,
            "RQP_ALLOW_INSECURE_REDIS": "true",
            "RQP_CONSOLE_PASSWORD_FILE": str(pw),
            "RQP_CONSOLE_USER": USER,
            "RQP_CONSOLE_PORT": str(self.port),
            "RQP_CONSOLE_REFRESH": "0.5",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.log = self.root / f"console-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> ConsoleServer:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [bin_path("rqp-console")], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"rqp-console exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"rqp-console did not answer in {timeout}s: {self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_groups([self.proc], grace=5)
            self.proc = None


class Response:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class Client:
    """A browser-like client: cookies kept, redirects not followed (tests look at them)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())
        self.csrf: str | None = None

    def request(
        self, method: str, path: str, *, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=10) as r:
                return Response(r.status, r.headers, r.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.headers, exc.read())

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post_json(self, path: str, payload: Any, *, origin: str | None = "self", csrf: str | None = "self") -> Response:
        headers = {"Content-Type": "application/json"}
        if origin is not None:
            headers["Origin"] = self.base if origin == "self" else origin
        if csrf is not None:
            headers["X-CSRF-Token"] = (self.csrf or "") if csrf == "self" else csrf
        return self.request("POST", path, data=json.dumps(payload).encode(), headers=headers)

    def login(self, user: str = USER, password: str = PASSWORD) -> Response:
        page = self.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text
        form = urllib.parse.urlencode(
            {"csrf": token.group(1), "user": user, "password": password, "next": "/workloads"}
        ).encode()
        r = self.request(
            "POST",
            "/login",
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": self.base},
        )
        if r.status == 302:
            meta = re.search(r'name="csrf-token" content="([^"]+)"', self.get("/workloads").text)
            assert meta
            self.csrf = meta.group(1)
        return r


def write_simulated_vms(blob_url: str, names: list[str], now: float, minutes: int = 60, step: float = 30.0) -> int:
    """Samples for ``names`` over the last ``minutes``, as rqp-metrics-logger stores them (the
    metrics logger's own store and sample code): CPU, memory, disk and network, each VM with its
    own level, busier over the last few minutes. Returns how many samples were written."""
    import math
    import random
    from datetime import UTC, datetime

    from rqp.connect import open_blob_store
    from rqp_metrics.sample import (
        CPU_PERCENT,
        DISK_READ_BYTES,
        DISK_WRITE_BYTES,
        MEM_PERCENT,
        MEM_USED_BYTES,
        NET_IN_BYTES,
        NET_OUT_BYTES,
        Sample,
    )
    from rqp_metrics.store import SampleStore

    store = SampleStore(open_blob_store(blob_url))
    rng = random.Random(17)
    written = 0
    for i, vm in enumerate(names):
        base = 8 + 5 * (i % 5)
        samples = []
        t = now - minutes * 60
        while t <= now:
            busy = 1.0 if now - t < 240 else 0.0
            wave = 10 * math.sin((t / 600.0) + i)
            cpu = max(0.0, min(100.0, base + wave + busy * (55 + 4 * (i % 4)) + rng.uniform(-4, 4)))
            ts = datetime.fromtimestamp(t, UTC)
            mem = 30 + 3 * (i % 6) + busy * 20 + rng.uniform(-1, 1)
            for metric, value, unit, period in (
                (CPU_PERCENT, cpu, "Percent", step),
                (MEM_PERCENT, mem, "Percent", None),
                (MEM_USED_BYTES, mem / 100 * 8 * 2**30, "Bytes", None),
                (DISK_READ_BYTES, (2 + busy * 40) * 2**20 * step * rng.uniform(0.5, 1.0), "Bytes", step),
                (DISK_WRITE_BYTES, (1 + busy * 25) * 2**20 * step * rng.uniform(0.5, 1.0), "Bytes", step),
                (NET_IN_BYTES, (50 + busy * 9000) * 1024 * step * rng.uniform(0.5, 1.0), "Bytes", step),
                (NET_OUT_BYTES, (20 + busy * 3000) * 1024 * step * rng.uniform(0.5, 1.0), "Bytes", step),
            ):
                samples.append(Sample(ts, vm, "azure", metric, value, unit, period))
            t += step
        for (day, name), group in store.group(samples).items():
            store.write_group(day, name, group)
        written += len(samples)
    return written


def push_forged_job(r: Any, jid: str, queue: str = "rqp") -> str:
    """A job naming ``os.system``, written straight into Redis as anyone holding a Redis password
    could: a processor must reject it (and log it in ``rqp:rejected``) without running it."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    import zlib

    data = zlib.compress(json.dumps(["os.system", None, ["touch /tmp/rqp-console-pwned"], {}]).encode())
    pipe = r.pipeline(transaction=True)
    pipe.hset(
        f"rq:job:{jid}",
        mapping={"data": data, "status": "queued", "origin": queue, "created_at": now, "enqueued_at": now,
                 "description": "not from rqp", "timeout": "60"},
    )  # fmt: skip
    pipe.sadd("rq:queues", f"rq:queue:{queue}")
    pipe.rpush(f"rq:queue:{queue}", jid)
    pipe.execute()
    return jid
