"""The doors: the login form (with a limit on guessing), the logout, and the health check.

The login and ``/healthz`` are the only endpoints ``guard.Guard`` lets through without a session
(``guard.PUBLIC_ENDPOINTS``, which names them by this blueprint's endpoints).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for

from ..auth import Credentials, LoginLimiter
from ..guard import safe_next
from ..views import Site

__all__ = ["blueprint"]

log = logging.getLogger("rqp.console")


def blueprint(site: Site, credentials: Credentials) -> Blueprint:
    bp = Blueprint("auth", __name__)
    guard, cs = site.guard, site.c.console
    limiter = LoginLimiter(cs.login_attempts)

    def form(nxt: str, error: str | None) -> str:
        return render_template("login.html", page="login", csrf=guard.csrf_token(), next=nxt, error=error)

    @bp.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True})

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        nxt = safe_next(request.values.get("next")) or url_for("workloads.workloads_page")
        if request.method == "GET":
            if guard.user() is not None:
                return redirect(nxt)
            return form(nxt, None)
        client = request.remote_addr or "?"
        wait = limiter.wait_seconds(client)
        if wait > 0:
            log.warning("login from %s refused: too many failed attempts", client)
            error = f"Too many failed logins from your address: try again in {int(wait) + 1} s."
            return Response(form(nxt, error), status=429, headers={"Retry-After": str(int(wait) + 1)})
        user = request.form.get("user", "")
        if credentials.check(user, request.form.get("password", "")):
            limiter.succeeded(client)
            guard.begin(cs.user)
            log.warning("login: %s from %s", cs.user, client)
            return redirect(nxt)
        limiter.failed(client)
        log.warning("failed login from %s", client)
        return Response(form(nxt, "Wrong user name or password."), status=401)

    @bp.post("/logout")
    def logout() -> Any:
        guard.end()
        return redirect(url_for("auth.login"))

    return bp
