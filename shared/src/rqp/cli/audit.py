"""``rqp rejected``, ``rqp audit``: the two logs an operator reads, newest first -- jobs the
processors refused, and operators' actions."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from .. import control
from ..ledger import rejections
from .context import backends
from .formatting import when

__all__ = ["cmd_audit", "cmd_rejected", "register"]


def _print_entries(
    entries: list[dict[str, Any]], as_json: bool, none: str, line: Callable[[dict[str, Any]], str]
) -> int:
    """A log's entries, newest first: JSON lines for scripts, ``line(e)`` for a person."""
    for text in [json.dumps(e) for e in entries] if as_json else [line(e) for e in entries] or [none]:
        print(text)
    return 0


def cmd_rejected(args: argparse.Namespace) -> int:
    return _print_entries(
        rejections(backends(args).redis, args.max),
        args.json,
        "no rejected jobs",
        lambda e: (
            f"{when(e['at'], short=True)}  {e.get('workload') or '-'}  {e['job']}  (worker {e['worker']})\n    {e['reason']}"
        ),
    )


def cmd_audit(args: argparse.Namespace) -> int:
    return _print_entries(
        control.audit(backends(args).redis, args.max),
        args.json,
        "no operator actions recorded",
        lambda e: f"{when(e['at'], short=True)}  {e['who']:<24}  {e['what']:<14}  {e['workload']}",
    )


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``rejected`` and ``audit`` on ``rqp``'s sub-commands."""
    for name, func, text in (
        ("rejected", cmd_rejected, "jobs the processors refused (forged, replayed, altered), newest first"),
        ("audit", cmd_audit, "operators' actions (pause, resume, cancel, retry, delete), newest first"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("--max", type=int, default=50)
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        p.set_defaults(func=func)
