"""What stands between the network and the console's pages: host check, login, CSRF, headers.

Every request:

* names a Host the console answers to (``ConsoleSettings.hosts``), so a web page that rebinds
  its own DNS name to the console's address gets nothing (DNS rebinding);
* is logged in (a signed session cookie: HttpOnly, SameSite=Strict, Secure under TLS, at most
  ``RQP_CONSOLE_SESSION_HOURS`` old), except the login page, the static files and ``/healthz``;
  a page asked without a session redirects to the login, an API call gets 401;
* if it is a POST, carries the session's CSRF token (header ``X-CSRF-Token`` or form field
  ``csrf``) and an ``Origin`` (or, failing that, a ``Referer``) that is the console's own -- a
  cross-site form or script is refused before any handler runs;
* is answered with a strict Content-Security-Policy (scripts and styles only from the console's
  own static files: no inline code at all), ``X-Frame-Options: DENY``, ``nosniff``, and
  ``Cache-Control: no-store`` on everything but the static files.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, jsonify, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from .settings import ConsoleSettings

__all__ = ["CSP", "Guard", "new_csrf_token", "safe_next"]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: endpoints reachable without a session
PUBLIC_ENDPOINTS = frozenset({"auth.login", "static", "auth.healthz"})
SESSION_COOKIE = "rqp_console"


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def safe_next(target: str | None) -> str | None:
    """A local path to go back to after the login; anything that could leave the site is dropped."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, Secure whenever the request came over TLS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request.is_secure or app.config.get("SESSION_COOKIE_SECURE"))


class Guard:
    """Installs the checks and headers on ``app``; see the module docstring."""

    def __init__(self, app: Flask, settings: ConsoleSettings, secret_key: bytes) -> None:
        self.settings = settings
        app.secret_key = secret_key
        app.session_interface = _SessionInterface()
        app.config.update(
            SESSION_COOKIE_NAME=SESSION_COOKIE,
            SESSION_COOKIE_HTTPONLY=True,
            SESSION_COOKIE_SAMESITE="Strict",
            PERMANENT_SESSION_LIFETIME=int(settings.session_hours * 3600),
            SESSION_REFRESH_EACH_REQUEST=False,
        )
        app.before_request(self._check_request)
        app.after_request(self._headers)

    # ------------------------------------------------------------------ sessions
    def user(self) -> str | None:
        """The logged-in user, or None (an expired session is cleared)."""
        name, issued = session.get("u"), session.get("t")
        if not isinstance(name, str) or not isinstance(issued, (int, float)):
            return None
        if time.time() - issued > self.settings.session_hours * 3600:
            session.clear()
            return None
        return name

    def begin(self, user: str) -> None:
        """A fresh session for ``user``: nothing of the pre-login session survives."""
        session.clear()
        session.permanent = True
        session["u"] = user
        session["t"] = time.time()
        session["csrf"] = new_csrf_token()

    def end(self) -> None:
        session.clear()

    def csrf_token(self) -> str:
        token = session.get("csrf")
        if not isinstance(token, str):
            token = session["csrf"] = new_csrf_token()
        return token

    # ------------------------------------------------------------------ every request
    def _check_request(self) -> Any:
        host = _hostname(request.host)
        if host not in self.settings.hosts:
            return _refuse(400, f"this console does not answer to host {host!r}; add it to RQP_CONSOLE_ALLOWED_HOSTS")
        if request.method == "POST" and (why := self._cross_site()):
            return _refuse(403, why)
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if self.user() is None:
            if request.path.startswith("/api/"):
                return _refuse(401, "log in first")
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return None

    def _cross_site(self) -> str | None:
        """Why this POST is refused as cross-site, or None."""
        own = f"{request.scheme}://{request.host}"
        origin = request.headers.get("Origin")
        if origin is not None:
            if origin != own:
                return f"cross-site request refused (Origin {origin} is not {own})"
        else:
            referer = request.headers.get("Referer", "")
            if not referer:
                return "cross-site request refused (no Origin or Referer header)"
            if referer != own and not referer.startswith(own + "/"):
                return "cross-site request refused (Referer is not this console)"
        sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf") or ""
        token = session.get("csrf")
        if not isinstance(token, str) or not sent or not hmac.compare_digest(sent.encode(), token.encode()):
            return "cross-site request refused (missing or wrong CSRF token; reload the page)"
        return None

    def _headers(self, response: Response) -> Response:
        h = response.headers
        h["Content-Security-Policy"] = CSP
        h["X-Frame-Options"] = "DENY"
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "same-origin"
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        h["Cross-Origin-Resource-Policy"] = "same-origin"
        h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
        if request.is_secure:
            h["Strict-Transport-Security"] = "max-age=31536000"
        if request.endpoint == "static":
            h["Cache-Control"] = "no-cache"
        else:
            h["Cache-Control"] = "no-store"
            h["Pragma"] = "no-cache"
        return response


def _hostname(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _refuse(status: int, why: str) -> Response:
    if request.path.startswith("/api/") or request.method == "POST":
        response = jsonify({"error": why})
    else:
        response = Response(why + "\n", mimetype="text/plain")
    response.status_code = status
    return response
