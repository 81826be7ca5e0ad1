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
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: PLR0913 - urllib's signature
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
