"""Operators' actions -- pause, resume, cancel, retry the failed records -- through ``rqp.control``,
on the console's second Redis identity (the only one allowed to write), each a request signed
with the console's own operator key (``RQP_CONSOLE_OPERATOR_KEY_FILE``).

The request names the logged-in person as ``"<user> (console)"``, so the audit log tells a
console action from one typed at the ``rqp`` CLI and says who asked; the roles act on it only
because the console's key is in their trusted-operators file. Without an operator key the
console refuses every action with one line saying so -- it never posts an unsigned request. A
refusal is the control module's one-line ``WorkloadError`` ("workload w1 is done; only a
workload that is running can be paused"), shown as it is.
"""

from __future__ import annotations

from typing import Any

import redis

from rqp import control
from rqp.errors import RqpError
from rqp.signing import SigningKey, TrustStore

from .sealed import Opener

__all__ = ["ACTIONS", "NO_OPERATOR_KEY", "ActionRefused", "actor", "audit_log", "perform"]

ACTIONS = ("pause", "resume", "cancel", "retry")

#: why every action is refused when the console has no key to sign with
NO_OPERATOR_KEY = (
    "actions are refused: the console has no operator key to sign them with; set RQP_CONSOLE_OPERATOR_KEY_FILE to "
    "a key from 'rqp keygen --operator' and add its .pub.pem to the roles' RQP_TRUSTED_OPERATORS_FILE"
)


class ActionRefused(RqpError):
    exit_code = 7


def actor(user: str) -> str:
    """Who asked, as the signed request and the audit log name them."""
    return f"{user} (console)"


def perform(
    r: redis.Redis,
    signer: SigningKey | None,
    action: str,
    workload_id: str,
    user: str,
    opener: Opener | None = None,
) -> dict[str, Any]:
    """Do ``action`` as ``user``, signed by ``signer``; returns what changed. ``RqpError`` when it
    is not allowed (``ActionRefused`` without a signer). ``opener``: the console's KEK, which
    ``retry`` needs (the failed set comes from the sealed summary)."""
    if signer is None:
        raise ActionRefused(NO_OPERATOR_KEY)
    who = actor(user)
    store = opener.store if opener is not None else None
    if action == "pause":
        return {"state": control.pause(r, signer, workload_id, who, store)}
    if action == "resume":
        return {"state": control.resume(r, signer, workload_id, who, store)}
    if action == "cancel":
        return {"state": control.cancel(r, signer, workload_id, who, store)}
    if action == "retry":
        if opener is None:
            raise ActionRefused(
                f"retrying workload {workload_id} needs its sealed summary: start the console with RQP_KEK_FILE, or run 'rqp retry {workload_id} --failed'"
            )
        count = control.retry_failed(r, opener.store, opener.workload(workload_id), signer, who)
        if not count:
            raise ActionRefused(
                f"workload {workload_id} has no failed records to retry, or is not finished (only a done, cancelled or failed workload's failed records can be run again)"
            )
        return {"requeued": count}
    raise ActionRefused(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")


def audit_log(
    r: redis.Redis, operators: TrustStore | None, submitters: TrustStore | None, limit: int = 200
) -> list[dict[str, Any]]:
    """Who did what to which workload, and when, newest first (read with the read-only identity),
    each with ``verified``/``note`` and ``cut`` (where entries were removed)."""
    return [e.to_dict() for e in control.audit(r, operators, submitters, limit)]
