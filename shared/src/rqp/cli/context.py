"""What every ``rqp`` command starts from: its ``Settings`` (the common options over the
environment over a config file), its ``Backends``, the workload it names and who is asking."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

import redis

from ..backends import Backends, unchecked_round
from ..config import Settings
from ..connect import open_operator_trust, open_trust_store
from ..control import audit as audit_log
from ..control import set_priority as _set_priority
from ..errors import RqpError, WorkloadError
from ..identity import actor
from ..signing import SigningKey, TrustStore
from ..status import Progress, verified_progress
from ..summary import StaleSummaryError, Summary, read_summary
from ..workload import Workload, blob_name, check_workload_id
from .formatting import when

__all__ = [
    "DELETED_LOOKBACK",
    "actor",
    "audit_trust",
    "backends",
    "deleted",
    "open_workload",
    "set_priority",
    "settings",
    "verify_counts",
]

#: how many of the newest audit entries are searched for a deletion
DELETED_LOOKBACK = 1000


def settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    """The settings a command runs with: its options (those it has) over the environment and
    the config file."""
    return Settings.load(
        getattr(args, "config", None),
        redis_url=getattr(args, "redis_url", None),
        blob_url=getattr(args, "blob_url", None),
        kek_file=getattr(args, "kek", None),
        kek_public_file=getattr(args, "public_key", None),
        signing_key_file=getattr(args, "signing_key", None),
        trusted_signers_file=getattr(args, "trusted_signers", None),
        **overrides,
    )


def backends(args: argparse.Namespace, *, need_private: bool = True) -> Backends:
    """The command's clients, each opened on first use (a command that only reads Redis never
    needs a KEK); a CLI command fails at once on a blob-store outage instead of retrying."""
    return Backends(settings(args), need_private=need_private)


def verify_counts(b: Backends, p: Progress, *, strict: bool = True) -> Progress:
    """``p`` with an ended workload's counts from its sealed summary, when this user holds the KEK
    to open it; else marked unverified (``rqp.status.verified_progress``): what a Redis writer did to
    the plain counters never reaches a report of an ended workload as fact. A summary of an older
    round than the sealed head's (put back by a blob-store writer) raises ``StaleSummaryError``;
    ``strict=False`` (a list of many workloads) marks that one unverified instead. Without the
    sealed head in Redis nothing proves the summary's round is the current one (an older round's
    blobs put back with its own round marker read the same): marked unverified, ``round_note``
    saying so, as ``rqp verify`` says "round not checked"."""
    read: list[tuple[Summary, Workload]] = []

    def summary() -> Summary | None:
        if not (b.settings.kek_file or b.settings.key_vault_key_id):
            return None
        try:
            w = open_workload(b, p.workload)
            s = read_summary(b.blobs, w)
            read.append((s, w))
            return s
        except StaleSummaryError:
            if strict:
                raise  # an older round's summary put back: said as such, never shown as verified
            return None
        except (RqpError, ValueError):
            return None

    p = verified_progress(p, summary)
    if p.verified and read:
        s, w = read[0]
        why = unchecked_round(b.redis, b.blobs, w, s.sealed_round)
        if why:
            p = replace(p, verified=False, round_note=why)
    return p


def set_priority(b: Backends, signer: SigningKey, workload_id: str, level: str) -> None:
    """``--priority`` of pack and submit: a request signed by ``signer`` (the packer's signing
    key is the workload's submitter key, which the roles accept for it), as ``rqp priority``
    posts it, audited under ``actor()``."""
    _set_priority(b.redis, signer, workload_id, level, actor(), b.blobs)


def audit_trust(s: Settings) -> tuple[TrustStore | None, TrustStore | None]:
    """Whose audit entries verify: the trusted operators and the trusted signers (submitters);
    either is None when this machine is not configured with it (its entries show unverified)."""
    operators = open_operator_trust(s)
    try:
        submitters: TrustStore | None = open_trust_store(s)
    except RqpError:
        submitters = None
    return operators, submitters


def open_workload(b: Backends, workload_id: str) -> Workload:
    """Open a workload the way the roles do: trusted signature first, then the key."""
    store = b.blobs
    check_workload_id(workload_id)  # before any lookup below names a blob after it
    try:
        return b.workload(workload_id)
    except WorkloadError:
        # only when it cannot be opened: was it deleted? (no extra round trip on the way that works)
        gone = None if store.exists(blob_name(workload_id, "manifest.json")) else deleted(b, workload_id)
        if gone:
            raise WorkloadError(gone) from None
        raise


def deleted(b: Backends, workload_id: str) -> str | None:
    """ "Workload W was deleted by ... at ..." when the audit log says so (None when it does not,
    or Redis cannot tell): better than "not found, pack it" for a workload someone removed. An
    entry that does not verify is said to be unverified."""
    try:
        entries = audit_log(b.redis, *audit_trust(b.settings), limit=DELETED_LOOKBACK)
    except (RqpError, redis.RedisError):
        return None
    for e in entries:
        if e.workload == workload_id and e.what.startswith("delete"):
            how = " and its data key destroyed (--shred)" if "shred" in e.what else ""
            mark = "" if e.verified else f" (UNVERIFIED: {e.note})"
            return (
                f"workload {workload_id} was deleted{how} by {e.who} at {when(e.at, short=True)}{mark} "
                f"('rqp audit'); its results and state are gone"
            )
    return None
