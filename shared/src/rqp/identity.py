"""Who this process is, in the one spelling every role writes to Redis and logs.

Leases, fleet entries, audit entries and rejections all name a process as ``host:pid``; a second
spelling would make a lease impossible to match against the fleet entry of the process holding it.

RQ worker names also carry *when* the process started (``start_token``): a container started
again after ``docker compose kill``, or a rebooted VM, has the same host name and hands out the
same pids, and RQ refuses a worker whose name is still registered ("There exists an active
worker named ... already"). With the start in the name, a restarted worker never collides with
the dead one, and the dead one's registration can be told apart from a live one
(``start_token(pid)`` of a live process matches its name; a dead one's does not).
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
from functools import cache

__all__ = ["actor", "parse_worker_name", "process_identity", "start_token", "worker_name"]

#: the prefix of every processor worker's RQ name
WORKER_PREFIX = "rqp-"
#: characters of the kernel's boot id kept in a start token (a reboot restarts the clock ticks)
BOOT_ID_CHARS = 4
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def actor() -> str:
    """Who is asking, for the audit log: the local user at this host (the CLI and the Python
    API sign control requests as this)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def process_identity(pid: int | None = None) -> str:
    """``host:pid`` of this process (or of ``pid`` on this host)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def _base36(n: int) -> str:
    out = ""
    while True:
        n, d = divmod(n, 36)
        out = _DIGITS[d] + out
        if not n:
            return out


@cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip().replace("-", "")[:BOOT_ID_CHARS]
    except OSError:
        return ""


@cache
def _own_fallback_token() -> str:
    """Without /proc (not Linux): a random token, fixed for this process's life."""
    return "r" + secrets.token_hex(4)


def start_token(pid: int | None = None) -> str | None:
    """When process ``pid`` (default: this one) started, as a short token: the boot's id and the
    start time in clock ticks since boot. None when no such process runs here. Two processes with
    the same pid on one host -- before and after a restart, a kill, a reboot -- never share one.
    It starts with a letter, so a name holding it is never mistaken for one without it."""
    try:
        with open(f"/proc/{'self' if pid is None else pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return _own_fallback_token() if pid is None or pid == os.getpid() else None
    if fields[0] == "Z":
        return None  # a zombie is dead, its parent just has not reaped it yet
    return f"s{_boot_id()}{_base36(int(fields[19]))}"  # field 22 of stat, starttime


def worker_name(pid: int | None = None) -> str:
    """The RQ worker name of a processor worker process: ``rqp-host-pid-start``, unique per start."""
    pid = os.getpid() if pid is None else pid
    return f"{WORKER_PREFIX}{socket.gethostname()}-{pid}-{start_token(pid) or 'gone'}"


def parse_worker_name(name: str) -> tuple[str, int, str | None] | None:
    """``(host, pid, start token)`` of a processor worker's RQ name (the token None in names from
    before tokens); None for a name rqp did not make."""
    if not name.startswith(WORKER_PREFIX):
        return None
    parts = name[len(WORKER_PREFIX) :].rsplit("-", 2)
    if len(parts) == 3 and parts[1].isdigit() and not parts[2].isdigit():
        return parts[0], int(parts[1]), parts[2]
    host, _, pid = name[len(WORKER_PREFIX) :].rpartition("-")
    return (host, int(pid), None) if host and pid.isdigit() else None
