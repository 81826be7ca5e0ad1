"""Operators' actions -- pause, resume, cancel, retry the failed records -- through ``rqp.control``,
on the console's second Redis identity (the only one allowed to write).

``rqp.control`` checks the workload's state, makes the change and records who asked and when
in the audit log (``rqp:audit``); the console passes the logged-in user as the actor, prefixed
so the log tells a console action from one typed at the ``rqp`` CLI. A refusal is the control
module's one-line ``WorkloadError`` ("workload w1 is done; only a workload that is running can
be paused"), shown as it is.
"""

from __future__ import annotations

from typing import Any

import redis

from rqp import control
from rqp.errors import RqpError

__all__ = ["ACTIONS", "ActionRefused", "audit_log", "perform"]

ACTIONS = ("pause", "resume", "cancel", "retry")


class ActionRefused(RqpError):
    exit_code = 7


def perform(r: redis.Redis, action: str, workload_id: str, user: str) -> dict[str, Any]:
    """Do ``action`` as ``user``; returns what changed. ``RqpError`` when it is not allowed."""
    actor = f"console:{user}"
    if action == "pause":
        return {"state": control.pause(r, workload_id, actor)}
    if action == "resume":
        return {"state": control.resume(r, workload_id, actor)}
    if action == "cancel":
        return {"state": control.cancel(r, workload_id, actor)}
    if action == "retry":
        count = control.retry_failed(r, workload_id, actor)
        if not count:
            raise ActionRefused(
                f"workload {workload_id} has no failed records to retry, or is not finished (only a done or failed workload's failed records can be run again)"
            )
        return {"requeued": count}
    raise ActionRefused(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")


def audit_log(r: redis.Redis, limit: int = 200) -> list[dict[str, Any]]:
    """Who did what to which workload, and when, newest first (read with the read-only identity)."""
    return control.audit(r, limit)
