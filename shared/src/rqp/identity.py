"""Who this process is, in the one spelling every role writes to Redis and logs.

Leases, fleet entries, audit entries and rejections all name a process as ``host:pid``; a second
spelling would make a lease impossible to match against the fleet entry of the process holding it.
"""

from __future__ import annotations

import getpass
import os
import socket

__all__ = ["actor", "process_identity", "worker_name"]


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


def worker_name(pid: int | None = None) -> str:
    """The RQ worker name of a processor worker process: ``rqp-host-pid``."""
    return f"rqp-{socket.gethostname()}-{os.getpid() if pid is None else pid}"
