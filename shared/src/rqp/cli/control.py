"""``rqp pause|resume|cancel|retry|priority|delete``: an operator's control of workloads from the
command line, each a request signed with the operator key (``RQP_OPERATOR_KEY_FILE``; else the
submitter's signing key) that ``rqp.control`` posts to the workload and the audit chain."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import redis

from .. import control
from ..backends import Backends
from ..connect import open_operator_key
from ..errors import ConfigError, WorkloadError
from ..ledger import Ledger, State
from ..signing import SigningKey
from .context import actor, backends

if TYPE_CHECKING:
    from ..workload import Workload

__all__ = ["cmd_cancel", "cmd_delete", "cmd_pause", "cmd_priority", "cmd_resume", "cmd_retry", "register"]


def _open(args: argparse.Namespace) -> tuple[Backends, redis.Redis, SigningKey]:
    """The command's backends, Redis and signing key -- the key first: without one nothing is
    asked of Redis."""
    b = backends(args, need_private=False)
    signer = open_operator_key(b.settings)
    return b, b.redis, signer


def cmd_pause(args: argparse.Namespace) -> int:
    b, r, signer = _open(args)
    control.pause(r, signer, args.workload, actor(), lambda: b.blobs)
    print(f"workload {args.workload}: paused: nothing new is queued; chunks in hand finish ('rqp resume' to go on)")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    b, r, signer = _open(args)
    control.resume(r, signer, args.workload, actor(), lambda: b.blobs)
    print(f"workload {args.workload}: running again")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    b, r, signer = _open(args)
    control.cancel(r, signer, args.workload, actor(), lambda: b.blobs)
    print(
        f"workload {args.workload}: cancelling: chunks in hand finish, then what was done is consolidated "
        f"('rqp results {args.workload}' once it says cancelled)"
    )
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    b = backends(args)
    signer = open_operator_key(b.settings)
    r = b.redis
    if not control.check_known(r, b.blobs, args.workload):
        raise WorkloadError(f"workload {args.workload} is packed but has not run; it has no failed records to retry")
    workload = b.workload(args.workload)
    count = control.retry_failed(r, b.blobs, workload, signer, actor())
    if not count:
        _check_nothing_to_retry(b, workload)
        print(f"workload {args.workload} has no failed records")
        return 0
    print(
        f"re-queued {count} failed records of {args.workload}; run 'rqp-scheduler run {args.workload}' (or a serving scheduler picks it up)"
    )
    return 0


def _check_nothing_to_retry(b: Backends, workload: Workload) -> None:
    """ "No failed records" only when the sealed summary agrees: a shown state a Redis writer set
    (cancelled, running, ... on a workload that ended done) must not make ``rqp retry --failed``
    exit 0 while the summary lists failures. ``WorkloadError`` naming both when they disagree."""
    from ..errors import BlobNotFoundError, IntegrityError  # noqa: PLC0415 - only this check needs them
    from ..ledger import Ledger  # noqa: PLC0415
    from ..summary import read_summary  # noqa: PLC0415

    wid = workload.id
    try:
        summary = read_summary(b.blobs, workload)
    except (BlobNotFoundError, IntegrityError):
        return
    failed, refused = summary.retry_counts()
    if refused and failed <= 0:
        raise WorkloadError(
            f"workload {wid}: its {refused} failed records were refused when the data was read (no id in the "
            f"--id-field): the same data refuses them again, so none is retried; fix the data and re-pack "
            f"('rqp results {wid} --failed' says why each failed)"
        )
    if failed > 0:
        shown = Ledger(b.redis, wid).state() or "unknown"
        raise WorkloadError(
            f"workload {wid}: its sealed summary lists {failed} failed records but Redis shows it {shown}: not "
            f"retried; a shown state that disagrees with the sealed summary was written behind rqp's back, or a "
            f"retry is under way ('rqp status {wid}')"
        )


def cmd_priority(args: argparse.Namespace) -> int:
    if args.level is None:
        return _show_priority(args)
    b, r, signer = _open(args)
    level = control.set_priority(r, signer, args.workload, args.level, actor(), lambda: b.blobs)
    print(f"workload {args.workload}: priority {level.value} (chunks queued from now on)")
    return 0


def _show_priority(args: argparse.Namespace) -> int:
    """``rqp priority W`` with no level: the priority its chunks are queued at (``rqp:priorities``,
    where the scheduler reads it), for a workload Redis knows or one only packed; nothing signed,
    nothing written."""
    b = backends(args, need_private=False)
    r = b.redis
    control.check_known(r, lambda: b.blobs, args.workload)
    led = Ledger(r, args.workload)
    level = led.priority().value
    state = led.state()
    ended = state is not None and State(state).finished
    said = f" (it is {state}; its priority no longer matters)" if ended else ""
    print(f"workload {args.workload}: priority {level}{said}")
    return 0


def _check_deletable(b: Backends, workload_id: str) -> None:
    """What ``rqp.control.delete`` would refuse, refused before anyone is asked to type the id: an
    unknown workload (exit 7, nothing written) or one that has not ended."""
    state = Ledger(b.redis, workload_id).state()
    if state is None:
        control.check_known(b.redis, lambda: b.blobs, workload_id)
    elif not State(state).finished:
        raise WorkloadError(
            f"workload {workload_id} is {state}; cancel it first ('rqp cancel {workload_id}') and delete it once cancelled"
        )


def cmd_delete(args: argparse.Namespace) -> int:
    b, r, signer = _open(args)
    _check_deletable(b, args.workload)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"deleting workload {args.workload} cannot be undone; add --yes to confirm")
        what = "delete and shred" if args.shred else "delete"
        answer = input(f"{what} workload {args.workload} (its Redis state and every blob)? type its id to confirm: ")
        if answer.strip() != args.workload:
            print("not deleted")
            return 1
    keys, blobs = control.delete(r, b.blobs, signer, args.workload, actor(), shred=args.shred)
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
    p = sub.add_parser("priority", parents=[common], help="show or set a workload's priority: high, normal or low")
    p.add_argument("workload")
    p.add_argument(
        "level", nargs="?", choices=["high", "normal", "low"], help="the new priority (none: show the current one)"
    )
    p.set_defaults(func=cmd_priority)
    p = sub.add_parser("delete", parents=[common], help="remove a finished workload's Redis state and blobs")
    p.add_argument("workload")
    p.add_argument("--shred", action="store_true", help="destroy its wrapped data key first: every copy unreadable")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_delete)
