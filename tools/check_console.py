#!/usr/bin/env python3
"""check_console.py -- rqp-console in a running stack, over HTTP, as an operator's browser sees it
(tools/test-images.sh and tools/test-vms.sh; the Python standard library only).

    python3 tools/check_console.py --url http://127.0.0.1:9180 --password-file secrets/console_password \
        --workload W --records 1000 --hosts HOST... [--vms NAME...] [--workers N]

Checks, each of which fails the run with one line saying what was seen:
  * without a session, a page redirects to the login and every JSON endpoint answers 401 with
    no workload in it; a wrong password is refused (401) and gets no session;
  * a POST without the session's CSRF token is refused (403), even with the right Origin;
  * the login form (its CSRF token, the session cookie, an Origin header) with the password
    file's password and user admin logs in (302), and the pages carry the strict CSP;
  * /api/workloads lists the workload, done, with all its records done and none failed, and
    /api/workloads/W agrees;
  * /api/fleet shows each of --hosts with a registered processor and a live RQ worker (and at
    least --workers workers in all);
  * with --vms, /api/vms shows every VM named (the metrics logger's store, read by the console).
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the checks look at the redirects themselves


class Browser:
    """Cookies kept, redirects not followed."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )

    def request(
        self, method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, bytes]:
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def json(self, path: str) -> Any:
        status, _, body = self.request("GET", path)
        check(status == 200, f"GET {path} answered {status} after the login: {body[:200]!r}")
        return json.loads(body)

    def login_form(self) -> str:
        status, _, body = self.request("GET", "/login")
        check(status == 200, f"GET /login answered {status}")
        token = re.search(rb'name="csrf" value="([^"]+)"', body)
        check(token is not None, "the login page has no CSRF token")
        return token.group(1).decode()

    def post_login(self, token: str, user: str, password: str) -> tuple[int, Any, bytes]:
        form = urllib.parse.urlencode({"csrf": token, "user": user, "password": password, "next": "/workloads"})
        return self.request(
            "POST",
            "/login",
            data=form.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": self.base},
        )


def check(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"console: {what}")


def wait_up(base: str, timeout: float) -> None:
    """Poll /healthz until the console answers (it starts once Redis lets its users in)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=3) as r:
                if r.status == 200 and json.loads(r.read()).get("ok") is True:
                    return
        except (OSError, ValueError) as exc:
            last = str(exc)
        check(time.monotonic() < deadline, f"{base}/healthz did not answer within {timeout:.0f}s ({last})")
        time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="where the console is published, e.g. http://127.0.0.1:9180")
    ap.add_argument("--password-file", required=True, help="secrets/console_password")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--workload", required=True, help="a workload that ran to done")
    ap.add_argument("--records", type=int, required=True, help="its number of records")
    ap.add_argument("--hosts", nargs="+", required=True, help="processor hosts that must be live in the fleet")
    ap.add_argument("--workers", type=int, default=0, help="at least this many RQ workers in the fleet")
    ap.add_argument("--vms", nargs="*", default=[], help="VMs the VMs page must show (metrics logger host names)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the console, and for the fleet")
    args = ap.parse_args()
    base = args.url.rstrip("/")
    with open(args.password_file) as f:
        password = f.read().strip()
    check(len(password) >= 12, f"{args.password_file} holds no usable password")
    wait_up(base, args.timeout)

    # ---- without a session: nothing
    anon = Browser(base)
    status, headers, _ = anon.request("GET", "/")
    check(
        status == 302 and "/login" in (headers.get("Location") or ""),
        f"GET / without a session answered {status} {headers.get('Location')}, not a redirect to the login",
    )
    for path in ("/api/workloads", f"/api/workloads/{args.workload}", "/api/fleet", "/api/audit"):
        status, _, body = anon.request("GET", path)
        check(status == 401, f"GET {path} without a session answered {status}, not 401")
        check(args.workload.encode() not in body, f"GET {path} without a session shows the workload")
    status, _, _ = anon.post_login(anon.login_form(), args.user, password + "-wrong")
    check(status == 401, f"a wrong password was answered {status}, not 401")
    status, _, _ = anon.request("GET", "/api/workloads")
    check(status == 401, f"after a failed login GET /api/workloads answered {status}, not 401")

    # ---- the login, as a browser does it
    b = Browser(base)
    status, headers, _ = b.post_login(b.login_form(), args.user, password)
    check(status == 302, f"logging in as {args.user} with {args.password_file} answered {status}, not 302")
    status, headers, page = b.request("GET", "/workloads")
    check(status == 200, f"GET /workloads after the login answered {status}")
    csp = headers.get("Content-Security-Policy") or ""
    check("default-src 'none'" in csp and "frame-ancestors 'none'" in csp, f"no strict CSP on the pages: {csp!r}")
    check(b'name="csrf-token"' in page, "the workloads page carries no CSRF token")
    # a POST without the session's CSRF token is refused before any handler runs
    status, _, _ = b.request(
        "POST",
        f"/api/workloads/{args.workload}/actions/pause",
        data=json.dumps({"confirm": args.workload}).encode(),
        headers={"Content-Type": "application/json", "Origin": base},
    )
    check(status == 403, f"a POST without the CSRF token answered {status}, not 403")
    # with it, the action reaches rqp.control signed by the console's operator key: on a finished
    # workload a pause is refused for its state (409), not for a missing key (403: no
    # RQP_CONSOLE_OPERATOR_KEY_FILE) -- and nothing changes
    token = re.search(rb'name="csrf-token" content="([^"]+)"', page)
    check(token is not None, "the workloads page's CSRF token cannot be read")
    assert token is not None
    status, _, body = b.request(
        "POST",
        f"/api/workloads/{args.workload}/actions/pause",
        data=json.dumps({"confirm": args.workload}).encode(),
        headers={"Content-Type": "application/json", "Origin": base, "X-CSRF-Token": token.group(1).decode()},
    )
    check(
        status == 409 and b"only a workload that is running can be paused" in body,
        f"a signed pause of the finished {args.workload} answered {status} {body[:200]!r}, not 409 (is the "
        "console's operator key mounted? RQP_CONSOLE_OPERATOR_KEY_FILE)",
    )
    audit = b.json("/api/audit")["entries"]
    check(all("verified" in e for e in audit), "/api/audit shows entries without their verification")

    # ---- the workload, with its counts
    rows = {w["id"]: w for w in b.json("/api/workloads")["workloads"]}
    check(args.workload in rows, f"/api/workloads does not list {args.workload}: {sorted(rows)}")
    w = rows[args.workload]
    got = (w["state"], w["total"], w["done"], w["failed"])
    check(got == ("done", args.records, args.records, 0), f"{args.workload} is (state, total, done, failed) {got}")
    detail = b.json(f"/api/workloads/{args.workload}")
    check(
        (detail.get("state"), detail.get("done")) == ("done", args.records),
        f"/api/workloads/{args.workload} says {detail.get('state')}, {detail.get('done')} done",
    )

    # ---- the fleet: each processor host registered with a live worker (heartbeats: poll a little)
    deadline = time.monotonic() + args.timeout  # for the fleet and the VMs page together
    while True:
        fleet = b.json("/api/fleet")
        hosts = {h["host"]: h for h in fleet["hosts"]}
        missing = [
            h
            for h in args.hosts
            if h not in hosts or not hosts[h]["processors"] or not any(not x["stale"] for x in hosts[h]["workers"])
        ]
        if not missing and fleet["workers"] >= args.workers:
            break
        check(
            time.monotonic() < deadline,
            f"/api/fleet after {args.timeout:.0f}s: no processor or no live worker on {missing}, "
            f"{fleet['workers']} workers (at least {args.workers} expected), hosts {sorted(hosts)}",
        )
        time.sleep(0.5)

    labels = {p.get("evidence") for h in fleet["hosts"] for p in h["processors"]}
    check(labels == {"self-reported"}, f"/api/fleet labels its processors {labels}, not self-reported")

    # ---- the VMs page, from the metrics logger's store (its first samples: poll a little)
    shown: list[str] = []
    while args.vms:
        shown = sorted(v["vm"] for v in b.json("/api/vms?window=1h")["vms"])
        if set(args.vms) <= set(shown):
            break
        check(time.monotonic() < deadline, f"/api/vms shows {shown}, not every one of {args.vms}")
        time.sleep(0.5)

    print(
        f"    console: login required (302 / 401), wrong password 401, POST without CSRF 403, a signed action "
        f"refused for the workload's state (operator key in place); {args.workload}: "
        f"{w['done']}/{w['total']} done; fleet: {fleet['processors']} processors, {fleet['workers']} workers on "
        f"{len(hosts)} hosts" + (f"; VMs page: {', '.join(shown)}" if shown else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
