"""From a command's failure to ``rqp``'s one line and exit code, in one place.

Every failure prints ``rqp: error: <what is wrong and how to fix it>`` and exits with the error's
``exit_code`` (see ``rqp.errors``); Redis refusing or going away mid-command is named as such.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse

import redis

from ..errors import RedisUnavailableError, RqpError
from .context import settings

__all__ = ["run"]

#: the exit code of a command interrupted by Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; map what it raises to one line on stderr and an exit code."""
    try:
        return int(args.func(args) or 0)
    except RqpError as exc:
        print(f"rqp: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except redis.exceptions.NoPermissionError as exc:
        print(f"rqp: error: {_no_permission(args, exc)}", file=sys.stderr)
        return RedisUnavailableError.exit_code
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        reason = str(exc).split("\n")[0].rstrip(".")
        print(
            f"rqp: error: lost Redis while running 'rqp {args.cmd}' ({reason}); check that it is up and retry",
            file=sys.stderr,
        )
        return RedisUnavailableError.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return INTERRUPTED


def _no_permission(args: argparse.Namespace, exc: Exception) -> str:
    """Redis's ACL refused a command: name the user, the command and what would work."""
    try:
        user = urllib.parse.urlsplit(settings(args).redis_url).username or "default"
    except RqpError:
        user = "?"
    first = str(exc).split("\n")[0].rstrip(".")
    return (
        f"the Redis user '{user}' may not do what 'rqp {args.cmd}' needs ({first}); run it with the "
        f"credentials of a role that may (RQP_REDIS_URL and RQP_REDIS_PASSWORD_FILE; 'rqp redis-acl render' "
        f"shows each user's rules)"
    )
