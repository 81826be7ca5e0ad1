"""``rqp pause|resume|cancel|retry|priority|delete``: an operator's control of workloads from the
command line (``rqp.control`` does the work and writes the audit log)."""

from __future__ import annotations

import argparse
import sys

import redis

from .. import control
from ..errors import ConfigError
from .context import actor, backends

__all__ = ["cmd_cancel", "cmd_delete", "cmd_pause", "cmd_priority", "cmd_resume", "cmd_retry", "register"]


def _redis(args: argparse.Namespace) -> redis.Redis:
    return backends(args).redis


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


def cmd_retry(args: argparse.Namespace) -> int:
    count = control.retry_failed(_redis(args), args.workload, actor())
    if not count:
        print(f"workload {args.workload} has no failed records")
        return 0
    print(
        f"re-queued {count} failed records of {args.workload}; run 'rqp-scheduler run {args.workload}' (or a serving scheduler picks it up)"
    )
    return 0


def cmd_priority(args: argparse.Namespace) -> int:
    level = control.set_priority(_redis(args), args.workload, args.level, actor())
    print(f"workload {args.workload}: priority {level.value} (chunks queued from now on)")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"deleting workload {args.workload} cannot be undone; add --yes to confirm")
        what = "delete and shred" if args.shred else "delete"
        answer = input(f"{what} workload {args.workload} (its Redis state and every blob)? type its id to confirm: ")
        if answer.strip() != args.workload:
            print("not deleted")
            return 1
    b = backends(args)
    keys, blobs = control.delete(b.redis, b.blobs, args.workload, actor(), shred=args.shred)
    shredded = "; its data key was destroyed first, so no copy of its ciphertexts can be read" if args.shred else ""
    print(f"workload {args.workload}: deleted {keys} Redis keys and {blobs} blobs{shredded}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``pause``, ``resume``, ``cancel``, ``retry``, ``priority`` and ``delete`` on ``rqp``'s sub-commands."""
    for name, func, text in (
        ("pause", cmd_pause, "stop queueing a running workload's records (chunks in hand finish)"),
        ("resume", cmd_resume, "go on with a paused workload"),
        ("cancel", cmd_cancel, "stop a workload for good; what was done is consolidated"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("workload")
        p.set_defaults(func=func)
    p = sub.add_parser("retry", parents=[common], help="re-queue a workload's failed records")
    p.add_argument("workload")
    p.add_argument("--failed", action="store_true", required=True)
    p.set_defaults(func=cmd_retry)
    p = sub.add_parser("priority", parents=[common], help="a workload's priority: high, normal or low")
    p.add_argument("workload")
    p.add_argument("level", choices=["high", "normal", "low"])
    p.set_defaults(func=cmd_priority)
    p = sub.add_parser("delete", parents=[common], help="remove a finished workload's Redis state and blobs")
    p.add_argument("workload")
    p.add_argument("--shred", action="store_true", help="destroy its wrapped data key first: every copy unreadable")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_delete)
