"""The Redis ACL rules of the console's two identities -- defined, with every role's, in
``rqp.redis_acl`` (their one home; ``rqp redis-acl init`` makes their password files and renders
them into ``redis_users.acl``):

* ``console`` -- everything the pages read, and nothing else: read-only key permission
  (``%R~``) on RQ's keys and rqp's, and only the read commands the console sends. It cannot
  write, run a script, or administer the server, so a stolen console password shows what the
  console shows (ids, counts, timings, sealed values) and changes nothing.
* ``console-actions`` -- what ``rqp.control``'s pause, resume, cancel and retry need, on the
  workloads' keys, the audit log and the submissions list. Nothing of RQ's, no processor or
  scheduler state.

``tests/console/test_redis_identities.py`` runs the real console against a Redis holding exactly
these users and checks that every page and every action works, and that the read identity is
refused a write.
"""

from __future__ import annotations

from rqp.redis_acl import role_rules

__all__ = ["ACTIONS_RULES", "ACTIONS_USER", "READ_RULES", "READ_USER", "acl_line"]

READ_USER = "console"
ACTIONS_USER = "console-actions"

READ_RULES = role_rules()[READ_USER]
ACTIONS_RULES = role_rules()[ACTIONS_USER]


def acl_line(user: str, rules: tuple[str, ...], password_sha256: str) -> str:
    """One line of a Redis ACL file for ``user`` (its password given as a SHA-256 hex digest)."""
    return " ".join(("user", user, "reset", "resetchannels", "on", f"#{password_sha256}", *rules))
