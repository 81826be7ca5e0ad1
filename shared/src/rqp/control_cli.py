"""``rqp pause|resume|cancel|priority|delete|rejected|audit``: an operator's control of workloads from
the command line (``rqp.control`` does the work; ``build_parser`` registers these)."""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from . import control
from .errors import ConfigError
from .ledger import rejections

__all__ = ["actor", "add_control_commands"]


def actor() -> str:
    """Who is asking, for the audit log: the local user at this host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _redis(args: argparse.Namespace) -> Any:
    from .cli import _settings  # noqa: PLC0415 - the CLI's settings helper
    from .connect import connect_redis  # noqa: PLC0415

    return connect_redis(_settings(args))


def cmd_pause(args: argparse.Namespace) -> int:
    control.pause(_redis(args), args.workload, actor())
    print(f"workload {args.workload}: paused: nothing new is queued; chunks in hand finish ('rqp resume' to go on)")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    control.resume(_redis(args), args.workload, actor())
    print(f"workload {args.workload}: running again")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    control.cancel(_redis(args), args.workload, actor())
    print(
        f"workload {args.workload}: cancelling: chunks in hand finish, then what was done is consolidated "
        f"('rqp results {args.workload}' once it says cancelled)"
    )
    return 0


def cmd_priority(args: argparse.Namespace) -> int:
    level = control.set_priority(_redis(args), args.workload, args.level, actor())
    print(f"workload {args.workload}: priority {level.value} (chunks queued from now on)")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from .cli import _settings  # noqa: PLC0415
    from .connect import connect_redis, open_blob_store  # noqa: PLC0415

    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"deleting workload {args.workload} cannot be undone; add --yes to confirm")
        what = "delete and shred" if args.shred else "delete"
        answer = input(f"{what} workload {args.workload} (its Redis state and every blob)? type its id to confirm: ")
        if answer.strip() != args.workload:
            print("not deleted")
            return 1
    settings = _settings(args)
    keys, blobs = control.delete(
        connect_redis(settings), open_blob_store(settings.blob_url), args.workload, actor(), shred=args.shred
    )
    shredded = "; its data key was destroyed first, so no copy of its ciphertexts can be read" if args.shred else ""
    print(f"workload {args.workload}: deleted {keys} Redis keys and {blobs} blobs{shredded}")
    return 0


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _print_entries(
    entries: list[dict[str, Any]], as_json: bool, none: str, line: Callable[[dict[str, Any]], str]
) -> int:
    """A log's entries, newest first: JSON lines for scripts, ``line(e)`` for a person."""
    for text in [json.dumps(e) for e in entries] if as_json else [line(e) for e in entries] or [none]:
        print(text)
    return 0


def cmd_rejected(args: argparse.Namespace) -> int:
    return _print_entries(
        rejections(_redis(args), args.max),
        args.json,
        "no rejected jobs",
        lambda e: (
            f"{_when(e['at'])}  {e.get('workload') or '-'}  {e['job']}  (worker {e['worker']})\n    {e['reason']}"
        ),
    )


def cmd_audit(args: argparse.Namespace) -> int:
    return _print_entries(
        control.audit(_redis(args), args.max),
        args.json,
        "no operator actions recorded",
        lambda e: f"{_when(e['at'])}  {e['who']:<24}  {e['what']:<14}  {e['workload']}",
    )


def add_control_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the commands on ``rqp``'s sub-parsers (``common``: the shared options)."""
    for name, func, text in (
        ("pause", cmd_pause, "stop queueing a running workload's records (chunks in hand finish)"),
        ("resume", cmd_resume, "go on with a paused workload"),
        ("cancel", cmd_cancel, "stop a workload for good; what was done is consolidated"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("workload")
        p.set_defaults(func=func)
    p = sub.add_parser("priority", parents=[common], help="a workload's priority: high, normal or low")
    p.add_argument("workload")
    p.add_argument("level", choices=["high", "normal", "low"])
    p.set_defaults(func=cmd_priority)
    p = sub.add_parser("delete", parents=[common], help="remove a finished workload's Redis state and blobs")
    p.add_argument("workload")
    p.add_argument("--shred", action="store_true", help="destroy its wrapped data key first: every copy unreadable")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_delete)
    for name, func, text in (
        ("rejected", cmd_rejected, "jobs the processors refused (forged, replayed, altered), newest first"),
        ("audit", cmd_audit, "operators' actions (pause, resume, cancel, retry, delete), newest first"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("--max", type=int, default=50)
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        p.set_defaults(func=func)
