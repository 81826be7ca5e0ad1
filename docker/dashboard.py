"""rq-dashboard for rqp, with its secrets read from files (never from the environment or argv).

Environment (none of it secret):
    RQP_REDIS_URL             rediss://dashboard@host:6379/0 (a user name, never a password; default
                              redis://redis:6379/0)
    RQP_REDIS_PASSWORD_FILE   file holding that user's Redis password (default
                              /run/secrets/redis_dashboard_password if present)
    RQP_REDIS_CA_FILE         CA certificate that signed the Redis server's certificate (rediss://); the
                              server's name is checked against the host in the URL
    RQ_DASHBOARD_USERNAME     HTTP basic-auth user (default admin) ...
    RQ_DASHBOARD_PASSWORD_FILE  ... and the file holding its password; no file: no basic auth, so
                              publish the port on 127.0.0.1 only and reach it through an SSH tunnel
    RQ_DASHBOARD_BIND / RQ_DASHBOARD_PORT   where to listen inside the container (0.0.0.0:9181)
    RQ_DASHBOARD_URL_PREFIX   e.g. /rq behind a reverse proxy (default: none)

rqp's jobs are JSON, not pickles: the dashboard decodes them with rqp's own serializer.
The dashboard's Redis user is read-only (``rqp.redis_acl``): its buttons that change jobs or
queues (requeue, delete, empty) are refused by Redis.
Connection errors are retried by the dashboard on each request, so it may start before Redis.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import urllib.parse
from pathlib import Path

DEFAULT_PASSWORD_FILE = "/run/secrets/redis_dashboard_password"
DEFAULT_UI_PASSWORD_FILE = "/run/secrets/dashboard_password"


def _read(path: str | None, what: str) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as exc:
        print(
            f"rqp-dashboard: error: {what} file {path} cannot be read ({exc.strerror}); mount it read-only",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def dashboard_redis_url(url: str, ca_file: str | None) -> str:
    """The URL rq-dashboard gets: it makes its Redis clients from the URL alone (again on most
    requests), so the TLS options travel in the URL's query -- the CA to verify the server with,
    and the host name check."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "rediss":
        return url
    query = urllib.parse.parse_qsl(parts.query)
    query += [("ssl_cert_reqs", "required"), ("ssl_check_hostname", "true")]
    if ca_file:
        query.append(("ssl_ca_certs", ca_file))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def build_app():
    from rq_dashboard.cli import make_flask_app  # noqa: PLC0415
    from rq_dashboard.web import config as service_config  # noqa: PLC0415
    from rq_dashboard.web import setup_rq_connection  # noqa: PLC0415 - lazy like the two above: rq-dashboard loads only when the app is built

    redis_url = os.environ.get("RQP_REDIS_URL", "redis://redis:6379/0")
    if urllib.parse.urlsplit(redis_url).password is not None:
        print(
            "rqp-dashboard: error: RQP_REDIS_URL must not carry a password (a user name is fine); use RQP_REDIS_PASSWORD_FILE",
            file=sys.stderr,
        )
        raise SystemExit(2)
    pw_file = os.environ.get("RQP_REDIS_PASSWORD_FILE") or (
        DEFAULT_PASSWORD_FILE if os.path.exists(DEFAULT_PASSWORD_FILE) else None
    )
    ui_file = os.environ.get("RQ_DASHBOARD_PASSWORD_FILE") or (
        DEFAULT_UI_PASSWORD_FILE if os.path.exists(DEFAULT_UI_PASSWORD_FILE) else None
    )
    ui_password = _read(ui_file, "dashboard password")
    username = os.environ.get("RQ_DASHBOARD_USERNAME", "admin") if ui_password else None
    prefix = os.environ.get("RQ_DASHBOARD_URL_PREFIX", "").rstrip("/")
    app = make_flask_app(None, username, ui_password, prefix)
    ca_file = os.environ.get("RQP_REDIS_CA_FILE") or None
    if ca_file:
        _read(ca_file, "Redis CA certificate")  # fail now, in one line, rather than on every request
    app.config["RQ_DASHBOARD_REDIS_URL"] = dashboard_redis_url(redis_url, ca_file)
    app.config["RQ_DASHBOARD_REDIS_PASSWORD"] = _read(pw_file, "Redis password")
    app.config["RQ_DASHBOARD_POLL_INTERVAL"] = int(os.environ.get("RQ_DASHBOARD_POLL_INTERVAL", "2500"))
    try:
        from rqp.jobs import JSONSerializer  # noqa: PLC0415

        service_config.serializer = JSONSerializer
    except ImportError:  # pragma: no cover - the image always has rqp
        pass
    setup_rq_connection(app)
    return app, bool(ui_password)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rqp-dashboard %(levelname)s %(message)s")
    app, auth = build_app()
    bind = os.environ.get("RQ_DASHBOARD_BIND", "0.0.0.0")
    port = int(os.environ.get("RQ_DASHBOARD_PORT", "9181"))
    logging.info(
        "rq-dashboard on %s:%d for %s%s",
        bind,
        port,
        os.environ.get("RQP_REDIS_URL", "redis://redis:6379/0"),
        " (basic auth)" if auth else " (no basic auth: keep the port on 127.0.0.1)",
    )
    from waitress import serve  # noqa: PLC0415

    # PID 1 without an init ignores SIGTERM by default: stop at once on `docker stop`
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(app, host=bind, port=port, threads=4, ident="rqp-dashboard")
    return 0


if __name__ == "__main__":
    sys.exit(main())
