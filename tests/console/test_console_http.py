"""The console over HTTP, as an attacker and as an operator's browser would talk to it: login,
sessions, CSRF, headers, refusals -- against the real ``rqp-console`` program and a real Redis."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time

from harness import bin_path

from rqp.oplog import read_audit

from .helpers import PASSWORD, USER, Client


def _running(r, wid: str = "w1") -> str:
    """A workload Redis says is running (no scheduler needed: the actions only record requests)."""
    r.hset(
        f"rqp:w:{wid}:meta",
        mapping={"state": "running", "started_at": time.time() - 30, "enqueued": 100, "total": 1000},
    )
    r.hset(f"rqp:w:{wid}:n", mapping={"done": 60, "failed": 2, "processing": 10})
    r.zadd("rqp:workloads", {wid: time.time() - 30})
    return wid


def test_unauthenticated_requests_are_refused(consoles, redis_url, r):
    _running(r)
    c = Client(consoles(redis_url).url)
    api = c.get("/api/workloads")
    assert api.status == 401 and api.json() == {"error": "log in first"}
    assert b"w1" not in api.body
    for path in ("/api/workloads/w1", "/api/workloads/w1/failures", "/api/fleet", "/api/vms", "/api/audit"):
        assert c.get(path).status == 401, path
    page = c.get("/workloads/w1")
    assert page.status == 302 and page.headers["Location"].startswith("/login?next=/workloads/w1")
    # an action without a session: refused before anything runs (no Origin: cross-site check first)
    assert c.post_json("/api/workloads/w1/actions/pause", {"confirm": "w1"}, csrf=None).status == 403
    assert r.hget("rqp:w:w1:meta", "state") == b"running"
    # the static files and the health check need no session (and carry no data)
    assert c.get("/static/console.js").status == 200
    assert c.get("/healthz").json() == {"ok": True}


def test_login_with_the_password_file_and_a_limit_on_guessing(consoles, redis_url):
    console = consoles(redis_url, RQP_CONSOLE_LOGIN_ATTEMPTS="3")
    c = Client(console.url)
    assert c.login(password="wrong").status == 401
    assert c.login(user="admin", password=PASSWORD).status == 401  # the user name counts too
    assert c.login(password="wrong again").status == 401
    limited = c.login()  # the right password, but this address has used its attempts
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    assert "Too many failed logins" in limited.text
    assert c.get("/api/workloads").status == 401
    ok = Client(consoles(redis_url).url)
    assert ok.login().status == 302
    assert ok.get("/api/workloads").status == 200
    logout = ok.request(
        "POST",
        "/logout",
        data=b"csrf=" + ok.csrf.encode(),
        headers={"Origin": ok.base, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert logout.status == 302
    assert ok.get("/api/workloads").status == 401


def test_session_cookie_and_security_headers(consoles, redis_url, r):
    _running(r)
    c = Client(consoles(redis_url).url)
    login = c.login()
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie  # plain http here
    page = c.get("/workloads/w1")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline for the CSP to allow
    api = c.get("/api/workloads/w1")
    assert api.headers["Cache-Control"] == "no-store" and api.headers["Content-Type"] == "application/json"
    # a page asked for under another host name (DNS rebinding) gets nothing
    assert c.get("/api/workloads", headers={"Host": "evil.example:80"}).status == 400


def test_cross_site_posts_are_refused_and_change_nothing(consoles, redis_url, r, operator):
    _running(r)
    console = consoles(redis_url, RQP_CONSOLE_ACTIONS_REDIS_URL=redis_url)
    c = Client(console.url)
    assert c.login().status == 302
    path = "/api/workloads/w1/actions/pause"
    attempts = {
        "no CSRF token": c.post_json(path, {"confirm": "w1"}, csrf=None),
        "a wrong CSRF token": c.post_json(path, {"confirm": "w1"}, csrf="x" * 43),
        "a foreign Origin": c.post_json(path, {"confirm": "w1"}, origin="http://evil.example"),
        "another port's Origin": c.post_json(path, {"confirm": "w1"}, origin=f"http://127.0.0.1:{console.port + 1}"),
        "no Origin nor Referer": c.post_json(path, {"confirm": "w1"}, origin=None),
    }
    for what, resp in attempts.items():
        assert resp.status == 403, (what, resp.status, resp.text)
        assert resp.json()["error"].startswith("cross-site request refused"), what
    assert r.hget("rqp:w:w1:meta", "state") == b"running"
    assert r.llen("rqp:audit") == 0
    # the login form is protected the same way: a foreign page cannot log a victim in
    forged = c.request(
        "POST",
        "/login",
        data=f"user={USER}&password={PASSWORD}".encode(),
        headers={"Origin": "http://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert forged.status == 403
    # the same request from the console's own page, confirmed, goes through and is audited
    unconfirmed = c.post_json(path, {})
    assert unconfirmed.status == 400 and "confirm" in unconfirmed.json()["error"]
    done = c.post_json(path, {"confirm": "w1"})
    assert done.status == 200 and done.json()["state"] == "paused", done.text
    assert r.hget("rqp:w:w1:meta", "state") == b"paused"
    (entry,) = read_audit(r, operator.trust)
    assert (entry.who, entry.what, entry.workload) == (f"{USER} (console)", "pause", "w1")
    assert entry.verified and entry.signer == operator.key.fingerprint and entry.cut == ""
    assert abs(entry.at - time.time()) < 60
    assert r.hget("rqp:w:w1:meta", "control") == b"pause"  # what a scheduler from before signed control obeys
    # the audit page shows it verified, by the key's name
    (shown,) = c.get("/api/audit").json()["entries"]
    assert shown["verified"] is True and shown["who"] == f"{USER} (console)" and shown["note"].startswith("signed by")
    # a refused action is one clear line from rqp.control
    again = c.post_json(path, {"confirm": "w1"})
    assert again.status == 409
    assert again.json()["error"] == "workload w1 is paused; only a workload that is running can be paused"


def test_actions_are_refused_without_an_operator_key(consoles, redis_url, r):
    """A console with an actions identity but no key to sign with refuses every action with one
    line saying what to set, and writes nothing (never an unsigned request)."""
    _running(r)
    c = Client(consoles(redis_url, RQP_CONSOLE_ACTIONS_REDIS_URL=redis_url, RQP_CONSOLE_OPERATOR_KEY_FILE="").url)
    c.login()
    resp = c.post_json("/api/workloads/w1/actions/pause", {"confirm": "w1"})
    assert resp.status == 403, resp.text
    error = resp.json()["error"]
    assert "no operator key" in error and "RQP_CONSOLE_OPERATOR_KEY_FILE" in error, error
    assert r.hget("rqp:w:w1:meta", "state") == b"running" and r.llen("rqp:audit") == 0


def test_a_forged_audit_entry_shows_unverified(consoles, redis_url, r):
    """An entry a Redis writer LPUSHed is shown with verified false and why."""
    r.lpush(
        "rqp:audit",
        json.dumps({"at": time.time(), "who": "alice (console)", "what": "delete --shred", "workload": "w1"}),
    )
    c = Client(consoles(redis_url).url)
    c.login()
    (shown,) = c.get("/api/audit").json()["entries"]
    assert shown["who"] == "alice (console)" and shown["verified"] is False and "unsigned" in shown["note"]


def test_actions_are_off_without_an_actions_identity(consoles, redis_url, r):
    _running(r)
    c = Client(consoles(redis_url).url)
    c.login()
    resp = c.post_json("/api/workloads/w1/actions/pause", {"confirm": "w1"})
    assert resp.status == 403 and "RQP_CONSOLE_ACTIONS_REDIS_URL" in resp.json()["error"]
    assert r.hget("rqp:w:w1:meta", "state") == b"running"
    assert c.get("/api/workloads/w1").json()["actions_enabled"] is False


def _start_error(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([bin_path("rqp-console")], env=env, capture_output=True, text=True, timeout=30)


def test_no_password_no_console(tmp_path, redis_url):
    base = {"PATH": "/usr/bin:/bin", "RQP_REDIS_URL": redis_url, "RQP_ALLOW_INSECURE_REDIS": "true"}
    none = _start_error(base)
    assert none.returncode == 2
    assert none.stderr.strip().splitlines() == [
        "rqp-console: error: no console password: set RQP_CONSOLE_PASSWORD_FILE to a file holding it "
        "(compose/init-secrets.sh writes one); the console has no default password"
    ]
    in_env = _start_error({**base, "RQP_CONSOLE_PASSWORD": "hunter2hunter2"})
    assert in_env.returncode == 2 and "RQP_CONSOLE_PASSWORD is not read" in in_env.stderr
    short = tmp_path / "pw"
    short.write_text("abc\n")
    weak = _start_error({**base, "RQP_CONSOLE_PASSWORD_FILE": str(short)})
    assert weak.returncode == 2 and "shorter than 12 characters" in weak.stderr
    short.write_text("a-long-enough-password\n")
    away = _start_error({**base, "RQP_CONSOLE_PASSWORD_FILE": str(short), "RQP_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert away.returncode == 6 and len(away.stderr.strip().splitlines()) == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in away.stderr


def test_binds_to_loopback_unless_told(consoles, redis_url):
    console = consoles(redis_url)
    log = console.log.read_text()
    assert f"serving http://127.0.0.1:{console.port} for user '{USER}'" in log
    assert "actions off (read-only)" in log and "failure reasons sealed (no KEK)" in log


#: each page and the script module its template loads
PAGE_MODULES = {
    "/workloads": "workloads.js",
    "/workloads/w1": "workload.js",
    "/fleet": "fleet.js",
    "/vms": "vms.js",
    "/audit": "audit.js",
}


def test_each_page_loads_its_own_script_module_served_as_javascript(consoles, redis_url, r):
    _running(r)
    c = Client(consoles(redis_url).url)
    assert c.login().status == 302
    for path, module in PAGE_MODULES.items():
        page = c.get(path)
        assert page.status == 200, path
        assert re.findall(r"<script[^>]*>", page.text) == [f'<script type="module" src="/static/{module}">'], path
        directives = dict(d.strip().split(" ", 1) for d in page.headers["Content-Security-Policy"].split(";"))
        assert directives["script-src"] == "'self'" and directives["default-src"] == "'none'", path
    # every module and all it imports, followed from the pages' own: same origin, a JavaScript type
    # (a module served as anything else does not run), no session needed (static files carry no data)
    anonymous = Client(c.base)
    todo, seen = sorted(set(PAGE_MODULES.values())), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        js = anonymous.get(f"/static/{name}")
        assert js.status == 200, name
        assert js.headers["Content-Type"].split(";")[0] == "text/javascript", (name, js.headers["Content-Type"])
        imports = re.findall(r'^import [^;]* from "([^"]+)";', js.text, flags=re.M)
        assert all(re.fullmatch(r"\./[a-z]+\.js", x) for x in imports), (name, imports)  # nothing from elsewhere
        todo.extend(x.removeprefix("./") for x in imports)
    assert {"console.js", "live.js", "charts.js"} <= seen, seen


def test_the_fleet_page_says_self_reported(consoles, redis_url, r):
    """The fleet page and its API label processors and their protections self-reported."""
    from rqp.ledger import register_processor

    register_processor(r, host="gpu-07", pid=4242, protections="sandbox: landlock, seccomp", workers=8, started_at=0.0)
    c = Client(consoles(redis_url).url)
    c.login()
    assert "self-reported" in c.get("/fleet").text
    (host,) = c.get("/api/fleet").json()["hosts"]
    assert host["processors"][0]["evidence"] == "self-reported"


def test_an_ended_workload_shows_its_sealed_counts_or_says_they_are_unverified(
    consoles, redis_url, world, kek, operator
):
    """Issue #22: forged counters of a done workload (done +10, failed -1,000,000) never reach the
    console as fact: with the KEK it shows the sealed summary's counts, without it 'unverified'."""
    script = "def process(r):\n    if r['n'] % 5 == 0:\n        raise ValueError('fives')\n    return r['n']\n"
    wid = world.pack("forged-console", [{"n": n} for n in range(20)], script=script)
    # the scheduler signs the results root with its operator key, which the console trusts
    world.settings = dataclasses.replace(world.settings, operator_key_file=operator.path)
    proc = world.processor()
    try:
        world.run_to_end(world.run(wid), proc)
    finally:
        proc.pool.close()
    world.r.hincrby(f"rqp:w:{wid}:n", "done", 10)
    world.r.hincrby(f"rqp:w:{wid}:n", "failed", -1_000_000)
    blind = Client(consoles(redis_url, RQP_BLOB_URL=world.settings.blob_url).url)
    blind.login()
    (row,) = blind.get("/api/workloads").json()["workloads"]
    assert row["verified"] is False
    keyed = Client(
        consoles(
            redis_url,
            RQP_BLOB_URL=world.settings.blob_url,
            RQP_KEK_FILE=str(kek[0]),
            RQP_TRUSTED_SIGNERS_FILE=str(world.settings.trusted_signers_file),
        ).url
    )
    keyed.login()
    (row,) = keyed.get("/api/workloads").json()["workloads"]
    assert (row["verified"], row["done"], row["failed"], row["state"]) == (True, 16, 4, "done")
    page = keyed.get(f"/api/workloads/{wid}").json()
    assert (page["verified"], page["done"], page["failed"]) == (True, 16, 4)
    root = page["results_root"]
    assert (root["verified"], root["size"], root["signer"]) == (True, 20, operator.key.fingerprint), root
