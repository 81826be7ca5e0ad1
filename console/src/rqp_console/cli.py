"""``rqp-console``: serve the operators' console (waitress, a production WSGI server).

    RQP_CONSOLE_PASSWORD_FILE=secrets/console_password rqp-console          # http://127.0.0.1:9180
    rqp-console --bind 0.0.0.0 --port 9180                                  # in a container

Fails at start, in one line and with rqp's exit codes, on what every request would fail on:
no password file, an unreachable Redis, an actions identity Redis refuses, a KEK given without
trusted signers.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from typing import Any

from rqp.backends import Backends
from rqp.config import Settings
from rqp.connect import open_operator_trust, open_trust_store
from rqp.errors import RqpError
from rqp.hardening import harden_process
from rqp.signing import LocalSigningKey
from rqp_metrics.store import SampleStore

from . import __version__
from .app import create_app
from .auth import Credentials
from .sealed import open_opener
from .settings import ConsoleSettings
from .state import Console
from .workload_page import ManifestTimes

__all__ = ["build", "main"]

log = logging.getLogger("rqp.console")


def build(settings: Settings, cs: ConsoleSettings) -> tuple[Console, Credentials, bytes]:
    """Connect to what the console reads and writes; ``RqpError`` on what is missing or wrong."""
    credentials = Credentials(cs.user, cs.read_password())
    secret = cs.read_session_key() or os.urandom(32)
    backends = Backends(settings)
    r = backends.redis
    actions = None
    if cs.actions_redis_url is not None:
        actions_settings = dataclasses.replace(
            settings, redis_url=cs.actions_redis_url, redis_password_file=cs.actions_password_file
        )
        # the second identity: a bundle of its own, of which only Redis is ever opened
        actions = Backends(actions_settings).redis
    store = backends.blobs
    console = Console(
        settings=settings,
        console=cs,
        r=r,
        actions=actions,
        samples=SampleStore(store),
        mq=backends.queue,
        opener=open_opener(backends),
        manifests=ManifestTimes(store),
        signer=LocalSigningKey(cs.operator_key_file) if cs.operator_key_file is not None else None,
        operators=open_operator_trust(settings),
        submitters=open_trust_store(settings) if settings.trusted_signers_file is not None else None,
    )
    return console, credentials, secret


def _describe(c: Console) -> str:
    cs = c.console
    actions = (
        f"actions on ({c.settings.replace(redis_url=cs.actions_redis_url).redis_url_safe})"
        if c.actions
        else "actions off (read-only)"
    )
    reasons = "failure reasons decrypted (RQP_KEK_FILE given)" if c.opener else "failure reasons sealed (no KEK)"
    if c.actions and c.signer is None:
        actions += " but refused: no RQP_CONSOLE_OPERATOR_KEY_FILE to sign them with"
    return f"http://{cs.bind}:{cs.port} for user {cs.user!r}; reads {c.settings.redis_url_safe}; {actions}; {reasons}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rqp-console", description="serve rqp's web console for operators")
    ap.add_argument("--config", help="TOML settings file (else RQP_CONFIG / RQP_* environment)")
    ap.add_argument("--bind", help="address to listen on (default: RQP_CONSOLE_BIND or 127.0.0.1)")
    ap.add_argument("--port", type=int, help="TCP port (default: RQP_CONSOLE_PORT or 9180)")
    ap.add_argument("--version", action="version", version=f"rqp-console {__version__}")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("RQP_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s rqp-console %(levelname)s %(message)s",
    )
    harden_process("rqp-console")  # with the KEK it holds data keys: no core dumps
    try:
        settings = Settings.load(args.config)
        cs = ConsoleSettings.from_env(bind=args.bind, port=args.port)
        console, credentials, secret = build(settings, cs)
    except RqpError as exc:
        print(f"rqp-console: error: {exc}", file=sys.stderr)
        return exc.exit_code
    app = create_app(console, credentials, secret)
    print(f"rqp-console: serving {_describe(console)}", file=sys.stderr, flush=True)
    serve(app, cs)
    return 0


def serve(app: Any, cs: ConsoleSettings) -> None:
    from waitress import serve as waitress_serve  # type: ignore[import-untyped]  # noqa: PLC0415 - only to serve

    def on_term(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    options: dict[str, Any] = {"host": cs.bind, "port": cs.port, "threads": cs.threads, "ident": "rqp-console"}
    if cs.trusted_proxy:
        options.update(
            trusted_proxy=cs.trusted_proxy,
            trusted_proxy_headers={"x-forwarded-proto", "x-forwarded-for"},
            clear_untrusted_proxy_headers=True,
        )
    try:
        waitress_serve(app, **options)
    except OSError as exc:
        print(
            f"rqp-console: error: cannot listen on {cs.bind}:{cs.port} ({exc.strerror}); choose another RQP_CONSOLE_PORT",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


if __name__ == "__main__":
    sys.exit(main())
