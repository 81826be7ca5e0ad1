"""The console's web application: pages (shells that the page's own script fills) and the JSON
they poll, the login, and the actions.

Every page is a small HTML document plus ``console.js`` and ``console.css`` from the package's
``static/`` folder -- nothing fetched from anywhere else, no inline script or style -- and
updates itself by polling the JSON endpoints every ``RQP_CONSOLE_REFRESH`` seconds. Answers are
memoized for about a second (``TtlCache``), so any number of open tabs costs Redis what one
does. ``guard.Guard`` applies the login, CSRF, host and header rules to all of it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Flask, Response, abort, jsonify, redirect, render_template, request, url_for
from redis.exceptions import NoPermissionError

from rqp.config import Settings
from rqp.errors import RqpError, WorkloadError
from rqp.ledger import SUBMISSIONS, Meta, WorkloadKeys
from rqp.storage import MessageQueue
from rqp.workload import check_workload_id

from . import __version__
from .actions import ACTIONS, audit_log, perform
from .auth import Credentials, LoginLimiter
from .cache import TtlCache
from .failures import failures_view, record_view
from .fleet import fleet_view, job_workers, read_workers
from .guard import Guard, safe_next
from .sealed import Opener
from .settings import ConsoleSettings
from .throughput import ThroughputHistory
from .vms import WINDOWS, vms_view
from .workload_page import ManifestTimes, workload_detail
from .workloads import list_workloads

__all__ = ["Console", "create_app"]

log = logging.getLogger("rqp.console")

#: seconds each kind of answer is reused for
TTL_LIST = 1.0
TTL_DETAIL = 1.0
TTL_FAILURES = 3.0
TTL_FLEET = 1.5
TTL_VMS = 10.0
TTL_AUDIT = 2.0
#: submissions waiting for a scheduler, listed on the workloads page
SUBMITTED_SHOWN = 50
#: workloads listed (newest first)
WORKLOADS_SHOWN = 100


@dataclass
class Console:
    """What the application reads from and writes to, built once at start (``cli.build``)."""

    settings: Settings
    console: ConsoleSettings
    #: the read-only Redis identity: everything but the actions
    r: redis.Redis
    #: the actions identity; None: the console is read-only
    actions: redis.Redis | None = None
    samples: Any = None  # rqp_metrics.store.SampleStore | None
    mq: MessageQueue | None = None
    opener: Opener | None = None
    manifests: ManifestTimes = field(default_factory=lambda: ManifestTimes(None))
    history: ThroughputHistory = field(default_factory=ThroughputHistory)
    cache: TtlCache = field(default_factory=TtlCache)


def _workload_id(wid: str) -> str:
    try:
        return check_workload_id(wid)
    except WorkloadError:
        abort(404)


def create_app(c: Console, credentials: Credentials, secret_key: bytes) -> Flask:
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    guard = Guard(app, c.console, secret_key)
    limiter = LoginLimiter(c.console.login_attempts)

    def page(name: str, **extra: Any) -> str:
        return render_template(
            f"{name}.html",
            page=name,
            user=guard.user(),
            csrf=guard.csrf_token(),
            refresh_ms=int(c.console.refresh_seconds * 1000),
            actions="on" if c.actions is not None else "off",
            decrypting="on" if c.opener is not None else "off",
            version=__version__,
            **extra,
        )

    def workers_by_job() -> dict[str, str]:
        return job_workers(c.cache.get("workers", TTL_FLEET, lambda: read_workers(c.r)))

    # ------------------------------------------------------------------ login
    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True})

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        nxt = safe_next(request.values.get("next")) or url_for("workloads_page")
        if request.method == "GET":
            if guard.user() is not None:
                return redirect(nxt)
            return render_template("login.html", page="login", csrf=guard.csrf_token(), next=nxt, error=None)
        client = request.remote_addr or "?"
        wait = limiter.wait_seconds(client)
        if wait > 0:
            log.warning("login from %s refused: too many failed attempts", client)
            body = render_template(
                "login.html",
                page="login",
                csrf=guard.csrf_token(),
                next=nxt,
                error=f"Too many failed logins from your address: try again in {int(wait) + 1} s.",
            )
            return Response(body, status=429, headers={"Retry-After": str(int(wait) + 1)})
        user = request.form.get("user", "")
        if credentials.check(user, request.form.get("password", "")):
            limiter.succeeded(client)
            guard.begin(c.console.user)
            log.warning("login: %s from %s", c.console.user, client)
            return redirect(nxt)
        limiter.failed(client)
        log.warning("failed login from %s", client)
        body = render_template(
            "login.html", page="login", csrf=guard.csrf_token(), next=nxt, error="Wrong user name or password."
        )
        return Response(body, status=401)

    @app.post("/logout")
    def logout() -> Any:
        guard.end()
        return redirect(url_for("login"))

    # ------------------------------------------------------------------ pages
    @app.get("/")
    def index() -> Any:
        return redirect(url_for("workloads_page"))

    @app.get("/workloads")
    def workloads_page() -> str:
        return page("workloads")

    @app.get("/workloads/<wid>")
    def workload_page(wid: str) -> str:
        return page("workload", workload=_workload_id(wid))

    @app.get("/fleet")
    def fleet_page() -> str:
        return page("fleet")

    @app.get("/vms")
    def vms_page() -> str:
        return page("vms", windows=list(WINDOWS))

    @app.get("/audit")
    def audit_page() -> str:
        return page("audit")

    # ------------------------------------------------------------------ JSON
    @app.get("/api/workloads")
    def api_workloads() -> Response:
        def compute() -> dict[str, Any]:
            now = time.time()
            rows = list_workloads(c.r, c.history, limit=WORKLOADS_SHOWN, now=now)
            waiting = [
                x.decode() if isinstance(x, bytes) else str(x) for x in c.r.lrange(SUBMISSIONS, 0, SUBMITTED_SHOWN - 1)
            ]
            return {"workloads": rows, "submitted": waiting, "now": now}

        return jsonify(c.cache.get("workloads", TTL_LIST, compute))

    @app.get("/api/workloads/<wid>")
    def api_workload(wid: str) -> Response:
        wid = _workload_id(wid)

        def compute() -> dict[str, Any] | None:
            return workload_detail(
                c.r,
                wid,
                history=c.history,
                workers_by_job=workers_by_job(),
                settings=c.settings,
                mq=c.mq,
                manifests=c.manifests,
                opener=c.opener,
            )

        detail = c.cache.get(("workload", wid), TTL_DETAIL, compute)
        if detail is None:
            return _error(404, f"workload {wid} is not known to Redis (not started yet, or deleted)")
        return jsonify({**detail, "actions_enabled": c.actions is not None})

    @app.get("/api/workloads/<wid>/failures")
    def api_failures(wid: str) -> Response:
        wid = _workload_id(wid)
        # keyed by the state too: the look a workload ends with is taken as it ends, so the page
        # never shows a finished workload's failures counted while it still ran (one HGET)
        state = c.r.hget(WorkloadKeys(wid).meta, Meta.STATE)
        return jsonify(c.cache.get(("failures", wid, state), TTL_FAILURES, lambda: failures_view(c.r, wid, c.opener)))

    @app.get("/api/workloads/<wid>/records/<int:rid>")
    def api_record(wid: str, rid: int) -> Response:
        wid = _workload_id(wid)
        return jsonify(record_view(c.r, wid, rid, c.opener))

    @app.get("/api/fleet")
    def api_fleet() -> Response:
        return jsonify(c.cache.get("fleet", TTL_FLEET, lambda: fleet_view(c.r, c.settings.rq_queue)))

    @app.get("/api/vms")
    def api_vms() -> Response:
        window = request.args.get("window", "1h")
        if window not in WINDOWS:
            return _error(400, f"window must be one of {', '.join(WINDOWS)}")
        if c.samples is None:
            return _error(503, "no metrics store: set RQP_BLOB_URL to where rqp-metrics-logger stores its samples")
        return jsonify(c.cache.get(("vms", window), TTL_VMS, lambda: vms_view(c.samples, c.r, window)))

    @app.get("/api/audit")
    def api_audit() -> Response:
        return jsonify({"entries": c.cache.get("audit", TTL_AUDIT, lambda: audit_log(c.r))})

    @app.post("/api/workloads/<wid>/actions/<action>")
    def api_action(wid: str, action: str) -> Response:
        wid = _workload_id(wid)
        if action not in ACTIONS:
            return _error(404, f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        if c.actions is None:
            return _error(
                403,
                "actions are off: start the console with RQP_CONSOLE_ACTIONS_REDIS_URL (a Redis user allowed to change workloads)",
            )
        body = request.get_json(silent=True) or {}
        if body.get("confirm") != wid:
            return _error(400, f'confirm the {action} by naming the workload: {{"confirm": "{wid}"}}')
        user = guard.user() or "?"
        result = perform(c.actions, action, wid, user)
        log.warning("action: %s %s by %s from %s: %s", action, wid, user, request.remote_addr, result)
        for key in (("workload", wid), "workloads", "audit"):
            c.cache.invalidate(key)  # the next refresh reads Redis again
        return jsonify({"ok": True, "action": action, "workload": wid, **result})

    # ------------------------------------------------------------------ errors, as one line
    @app.errorhandler(RqpError)
    def rqp_error(exc: RqpError) -> Response:
        status = 409 if isinstance(exc, WorkloadError) or exc.exit_code == 7 else 400
        return _error(status, str(exc))

    @app.errorhandler(NoPermissionError)
    def redis_denied(exc: NoPermissionError) -> Response:
        first = str(exc).split("\n")[0]
        return _error(
            403, f"Redis refused the console's user: {first}; see the console's ACL rules in console/README.md"
        )

    @app.errorhandler(redis.RedisError)
    def redis_error(exc: redis.RedisError) -> Response:
        first = str(exc).split("\n")[0]
        return _error(503, f"Redis at {c.settings.redis_url_safe} did not answer ({first}); the page retries")

    return app


def _error(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response
