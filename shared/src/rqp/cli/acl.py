"""``rqp redis-acl init|render``: the Redis users per role and Redis's TLS certificates
(``rqp.redis_acl`` holds the rules and makes the files)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import DEFAULT_EVENTS_QUEUE, DEFAULT_STATUS_QUEUE
from ..redis_acl import (
    DEFAULT_METRICS_QUEUE,
    ROLES,
    Queues,
    init_redis_secrets,
    read_password_hashes,
    render_acl,
    write_acl,
)

__all__ = ["add_redis_acl_command", "register"]


def _queues(args: argparse.Namespace) -> Queues:
    return Queues(status=args.status_queue, events=args.events_queue, metrics=args.metrics_queue)


def _cmd_render(args: argparse.Namespace) -> int:
    acl = render_acl(read_password_hashes(Path(args.dir)), _queues(args))
    if args.output:
        write_acl(Path(args.output), acl)
    else:
        sys.stdout.write(acl)
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    hosts = [h for spec in args.host or [] for h in spec.replace(",", " ").split()]
    made, warnings = init_redis_secrets(Path(args.dir), hosts, _queues(args))
    for w in warnings:
        print(f"rqp redis-acl: warning: {w}", file=sys.stderr)
    print(" ".join(made))
    return 0


def add_redis_acl_command(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``redis-acl`` with its two actions, ``init`` and ``render``."""
    p = sub.add_parser(
        "redis-acl",
        help="Redis users per role (ACL file) and Redis's TLS certificates",
        description=(
            "One Redis user per rqp role with least privilege, and a private CA with Redis's server "
            "certificate. 'init' makes what is missing in DIR (nothing is overwritten); 'render' prints "
            "the ACL file for DIR's password files. " + " ".join(f"{r.user}: {r.what}." for r in ROLES)
        ),
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, help_ in (
        ("init", _cmd_init, "make the missing password files, CA, server certificate and ACL file in DIR"),
        ("render", _cmd_render, "print (or -o write) the ACL file for the password files in DIR"),
    ):
        a = actions.add_parser(name, help=help_)
        a.add_argument("dir", metavar="DIR", help="the secrets directory (compose/secrets)")
        a.add_argument("--status-queue", default=DEFAULT_STATUS_QUEUE, help="RQP_STATUS_QUEUE (default: %(default)s)")
        a.add_argument("--events-queue", default=DEFAULT_EVENTS_QUEUE, help="RQP_EVENTS_QUEUE (default: %(default)s)")
        a.add_argument(
            "--metrics-queue", default=DEFAULT_METRICS_QUEUE, help="RQP_METRICS_QUEUE (default: %(default)s)"
        )
        a.set_defaults(func=func)
        if name == "init":
            a.add_argument(
                "--host",
                action="append",
                metavar="NAME_OR_IP",
                help="a name or address processors reach Redis by (the scheduler VM's); repeat or comma-separate",
            )
        else:
            a.add_argument("--output", "-o", help="write the file (mode 0400, never overwritten) instead of printing")
    return p


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``redis-acl`` on ``rqp``'s sub-commands (it reads no settings: none of the common options)."""
    add_redis_acl_command(sub)
