"""rq-dashboard for rqp, with its secrets read from files (never from the environment or argv).

Environment (none of it secret):
    RQP_REDIS_URL             redis://host:6379/0, without a password (default redis://redis:6379/0)
    RQP_REDIS_PASSWORD_FILE   file holding the Redis password (default /run/secrets/redis_password if present)
    RQ_DASHBOARD_USERNAME     HTTP basic-auth user (default admin) ...
    RQ_DASHBOARD_PASSWORD_FILE  ... and the file holding its password; no file: no basic auth, so
                              publish the port on 127.0.0.1 only and reach it through an SSH tunnel
    RQ_DASHBOARD_BIND / RQ_DASHBOARD_PORT   where to listen inside the container (0.0.0.0:9181)
    RQ_DASHBOARD_URL_PREFIX   e.g. /rq behind a reverse proxy (default: none)

rqp's jobs are JSON, not pickles: the dashboard decodes them with rqp's own serializer.
Connection errors are retried by the dashboard on each request, so it may start before Redis.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

DEFAULT_PASSWORD_FILE = "/run/secrets/redis_password"
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


def build_app():
    from rq_dashboard.cli import make_flask_app  # noqa: PLC0415
    from rq_dashboard.web import config as service_config  # noqa: PLC0415
    from rq_dashboard.web import setup_rq_connection  # noqa: PLC0415 - lazy like the two above: rq-dashboard loads only when the app is built

    redis_url = os.environ.get("RQP_REDIS_URL", "redis://redis:6379/0")
    if "@" in redis_url.split("//", 1)[-1].split("/", 1)[0]:
        print(
            "rqp-dashboard: error: RQP_REDIS_URL must not carry a password; use RQP_REDIS_PASSWORD_FILE",
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
    app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url
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
