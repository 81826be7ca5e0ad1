"""The Redis ACL rules of the console's two identities, for ``rqp redis-acl`` to render.

* ``console`` -- everything the pages read, and nothing else: read-only key permission
  (``%R~``) on RQ's keys and rqp's, and only the read commands the console sends. It cannot
  write, run a script, or administer the server, so a stolen console password shows what the
  console shows (ids, counts, timings, sealed values) and changes nothing.
* ``console-actions`` -- what ``rqp.control``'s pause, resume, cancel and retry need: the
  control script (``control.lua``: EVALSHA, and the commands it runs, which Redis checks against
  the caller's ACL too) and ``Ledger.requeue_failed``'s transaction, on the workloads' keys, the
  audit log and the submissions list. Nothing of RQ's, no processor or scheduler state.

``tests/console/test_redis_identities.py`` runs the real console against a Redis holding exactly
these users and checks that every page and every action works, and that the read identity is
refused a write.
"""

from __future__ import annotations

from rqp.ledger import AUDIT, SUBMISSIONS, WorkloadKeys

__all__ = ["ACTIONS_RULES", "ACTIONS_USER", "BASE", "READ_RULES", "READ_USER", "acl_line"]

READ_USER = "console"
ACTIONS_USER = "console-actions"

#: every rqp role's base (as in ``rqp.redis_acl``): no command, then the connection commands
#: minus the administrative ones
BASE = ("-@all", "+@connection", "-@admin", "-@dangerous", "-select", "-client|tracking")

READ_RULES = (
    *BASE,
    # progress (Ledger.snapshot), the workload page, failures, one record
    "+hgetall", "+hget", "+hmget", "+hlen", "+hexists", "+hscan", "+getbit",
    "+zcard", "+zcount", "+zrange", "+zrevrange", "+zrangebyscore", "+zscore",
    # audit log, rejected jobs, submissions, RQ's workers and queue, the status stream
    "+lrange", "+llen", "+smembers", "+xlen",
    "%R~rq:*",
    "%R~rqp:*",
)  # fmt: skip

ACTIONS_RULES = (
    *BASE,
    # control.lua through EVALSHA (loaded on first use), and what it runs
    "+evalsha", "+script|load", "+script|exists",
    "+hget", "+hset", "+hdel", "+exists", "+rpush", "+lpush", "+ltrim",
    # retry failed: Ledger.requeue_failed's transaction, and reading the audit log back
    "+multi", "+exec", "+discard", "+bitcount", "+persist", "+lrange",
    f"~{WorkloadKeys('*').prefix}*",
    f"~{AUDIT}",
    f"~{SUBMISSIONS}",
)  # fmt: skip


def acl_line(user: str, rules: tuple[str, ...], password_sha256: str) -> str:
    """One line of a Redis ACL file for ``user`` (its password given as a SHA-256 hex digest)."""
    return " ".join(("user", user, "reset", "resetchannels", "on", f"#{password_sha256}", *rules))
