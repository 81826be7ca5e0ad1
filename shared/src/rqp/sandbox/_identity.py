"""The uid a script host runs as: its own unprivileged one where the role can give it one.

Landlock confines which files a host may open, seccomp which calls it may make; a uid that owns
none of the role's files is the third fence: even a call the allowlist lets through (a ``stat``,
a ``truncate`` in a directory some future rule grants) cannot act on a file of the role's.

The role can start its hosts under another uid only with ``CAP_SETUID`` and ``CAP_SETGID``
(root, or a role given those two capabilities), and only when that uid can reach what a host
needs: the interpreter, its library directories, rqp's host module and the scratch root. Where
it cannot, hosts run as the role's uid, the allowlist alone keeps metadata calls away, and the
protections line each role logs at start says which and why (``describe``).
"""

from __future__ import annotations

import os
import select
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_SANDBOX_GID",
    "DEFAULT_SANDBOX_UID",
    "Identity",
    "can_set_ids",
    "kill_as",
    "parse_uid",
    "plan",
    "run_as",
]

#: "nobody": owns no file of a role (``RQP_SANDBOX_UID`` chooses another, ``off`` keeps the role's)
DEFAULT_SANDBOX_UID = 65534
DEFAULT_SANDBOX_GID = 65534
CAP_SETGID = 6
CAP_SETUID = 7
#: how long a role waits for a child acting as the host's uid (``run_as``): a mkdir, a removal
RUN_AS_SECONDS = 10.0


@dataclass(frozen=True)
class Identity:
    """Who a host runs as: ``uid``/``gid`` to switch to, or None with ``reason`` why not."""

    uid: int | None
    gid: int | None
    reason: str = ""


def parse_uid(value: str) -> tuple[int, int] | None:
    """``RQP_SANDBOX_UID``: ``UID`` or ``UID:GID`` (the gid defaults to the uid), or ``off``."""
    value = value.strip()
    if value.lower() in ("off", "false", "no", "none"):
        return None
    uid_text, _, gid_text = value.partition(":")
    try:
        uid = int(uid_text)
        gid = int(gid_text) if gid_text else uid
    except ValueError:
        raise ValueError(f"RQP_SANDBOX_UID={value!r} is not UID, UID:GID or off; e.g. RQP_SANDBOX_UID=65534") from None
    if uid <= 0 or gid <= 0:
        raise ValueError(f"RQP_SANDBOX_UID={value!r}: the script host's uid and gid must not be root (0)")
    return uid, gid


def can_set_ids() -> bool:
    """Whether this process has ``CAP_SETUID`` and ``CAP_SETGID`` in its effective set."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                eff = int(line.split()[1], 16)
                return bool(eff >> CAP_SETUID & 1 and eff >> CAP_SETGID & 1)
    except (OSError, ValueError):
        pass
    return False


def _searchable_by(path: str, uid: int, gid: int) -> str | None:
    """The first directory on the way to ``path`` that ``uid``/``gid`` cannot search, or None
    (the way as written and, through any symbolic link, the way to what it points at)."""
    written, real = Path(os.path.abspath(path)), Path(path).resolve()
    ways = [written, real] if written != real else [written]
    dirs = [d for p in ways for d in ([*reversed(p.parents), p] if p.is_dir() else list(reversed(p.parents)))]
    for d in dirs:
        try:
            st = d.stat()
        except OSError:
            return str(d)
        mode = st.st_mode
        if st.st_uid == uid:
            ok = mode & stat.S_IXUSR
        elif st.st_gid == gid:
            ok = mode & stat.S_IXGRP
        else:
            ok = mode & stat.S_IXOTH
        if not ok:
            return str(d)
    return None


def plan(wanted: tuple[int, int] | None, needs: list[str]) -> Identity:
    """Whether hosts can run as ``wanted`` here: the capabilities, a uid other than the role's,
    and every path in ``needs`` reachable by it."""
    if wanted is None:
        return Identity(None, None, "RQP_SANDBOX_UID=off")
    uid, gid = wanted
    if uid == os.geteuid():
        return Identity(None, None, f"RQP_SANDBOX_UID {uid} is the role's own uid")
    if not sys.platform.startswith("linux") or not can_set_ids():
        return Identity(None, None, "the role has no CAP_SETUID/CAP_SETGID to give it one")
    for path in needs:
        blocked = _searchable_by(path, uid, gid)
        if blocked is not None:
            return Identity(None, None, f"uid {uid} cannot reach {path} ({blocked} is not searchable by it)")
    return Identity(uid, gid)


def run_as(uid: int, gid: int, action: Callable[[], bytes]) -> bytes | None:
    """Run ``action`` in a forked child that has become ``uid``/``gid`` with no groups; what it
    returned, or None when it could not (no ``CAP_SETUID``/``CAP_SETGID``, or ``action`` failed).

    What a role without ``CAP_CHOWN``/``CAP_KILL`` does to its hosts' things as their uid: make
    and remove their scratch directories, signal them. A fork, not a new interpreter: the child
    only calls into the kernel (no lock another thread may hold)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (its result crosses the pipe)
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.write(w, b"+" + action())
        except BaseException:  # noqa: BLE001 - the parent sees no "+": that is the failure
            pass
        finally:
            os._exit(0)
    os.close(w)
    out = b""
    deadline = time.monotonic() + RUN_AS_SECONDS
    try:
        while (left := deadline - time.monotonic()) > 0 and select.select([r], [], [], left)[0]:
            got = os.read(r, 4096)
            if not got:
                break
            out += got
    finally:
        os.close(r)
    try:  # a child that is stuck is left, not waited for: the role must not hang on it
        os.waitpid(pid, 0 if out.startswith(b"+") else os.WNOHANG)
    except ChildProcessError:
        pass  # reaped by someone else: the pipe already said how it went
    return out[1:] if out.startswith(b"+") else None


def kill_as(uid: int, gid: int, pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid`` as ``uid`` (a role may not signal another uid's
    processes without ``CAP_KILL``); True when it was sent."""

    def send() -> bytes:
        os.killpg(pgid, sig)
        return b""

    return run_as(uid, gid, send) is not None
