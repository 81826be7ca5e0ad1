"""``rqp rejected``, ``rqp audit``: the two logs an operator reads, newest first -- jobs the
processors refused, and operators' signed requests (each marked verified or not, and where the
hash chain was cut)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from .. import control
from ..ledger import rejections
from ..oplog import AUDIT_KEEP, AuditEntry
from .context import audit_trust, backends
from .formatting import when

__all__ = ["EXIT_UNVERIFIED", "cmd_audit", "cmd_rejected", "register"]

#: the cut ``read_audit`` reports when the log reached ``AUDIT_KEEP`` entries and the oldest went
TRIMMED = "older entries trimmed"
#: ``rqp audit --verify`` when an entry does not verify or the chain was cut (as IntegrityError)
EXIT_UNVERIFIED = 4


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


def _name(e: AuditEntry) -> str:
    """Which entry, for a person: when, who, what, on which workload."""
    return f"{when(e.at, short=True)} {e.who} {e.what} {e.workload}"


def _line(e: dict[str, Any]) -> str:
    mark = f"verified ({e['note'].removeprefix('signed by ')})" if e["verified"] else f"UNVERIFIED: {e['note']}"
    out = f"{when(e['at'], short=True)}  {e['who']:<24}  {e['what']:<14}  {e['workload']}  [{mark}]"
    if e["cut"]:
        out += f"\n    --- chain cut: {e['cut']} ---"
    return out


def cmd_audit(args: argparse.Namespace) -> int:
    b = backends(args, need_private=False)
    entries = control.audit(b.redis, *audit_trust(b.settings), limit=AUDIT_KEEP if args.verify else args.max)
    if not args.verify:
        return _print_entries([e.to_dict() for e in entries], args.json, "no operator actions recorded", _line)
    problems = [f"entry {i} ({_name(e)}): not verified: {e.note}" for i, e in enumerate(entries) if not e.verified]
    problems += [
        f"entry {i} ({_name(e)}): chain cut: {e.cut}" for i, e in enumerate(entries) if e.cut and e.cut != TRIMMED
    ]
    for p in problems:
        print(f"rqp: audit: {p}", file=sys.stderr)
    if problems:
        return EXIT_UNVERIFIED
    print(f"audit log verified: {len(entries)} entries, each signed by a trusted key, chain unbroken")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``rejected`` and ``audit`` on ``rqp``'s sub-commands."""
    for name, func, text in (
        ("rejected", cmd_rejected, "jobs the processors refused (forged, replayed, altered), newest first"),
        ("audit", cmd_audit, "operators' signed requests (pause, resume, cancel, retry, delete), newest first"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("--max", type=int, default=50)
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        if name == "audit":
            p.add_argument(
                "--verify",
                action="store_true",
                help="exit 0 only when every entry verifies and the chain is unbroken (else 4, a line per problem)",
            )
        p.set_defaults(func=func)
