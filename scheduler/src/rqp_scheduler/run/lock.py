"""The workload's scheduler lock: one scheduler supervises a workload at a time.

A lock held by a process of this host that no longer exists (a crashed scheduler) is taken over
at once instead of after its TTL.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from rqp.errors import WorkloadError
from rqp.ledger import LockHeld

if TYPE_CHECKING:  # context.py imports this module
    from .context import RunContext

__all__ = ["LOCK_SECONDS", "RunLock"]

#: the lock's TTL; it is renewed every third of it
LOCK_SECONDS = 30


class RunLock:
    """Take, renew and release ``ctx``'s workload lock in this scheduler's name."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def take(self) -> None:
        try:
            self.ctx.ledger.take_lock(self.ctx.me, LOCK_SECONDS, _holder_dead)
        except LockHeld as held:
            raise WorkloadError(
                f"workload {self.ctx.id} is already being scheduled by {held.holder}; wait for it, or stop it and retry in {LOCK_SECONDS}s"
            ) from None

    def renew(self) -> None:
        if not self.ctx.ledger.renew_lock(self.ctx.me, LOCK_SECONDS):
            raise WorkloadError(
                f"workload {self.ctx.id}: another scheduler took over its lock; this one stops supervising it"
            )

    def release(self) -> None:
        self.ctx.ledger.release_lock(self.ctx.me)


def _holder_dead(holder: str) -> bool:
    """A lock held by a process of this host that no longer exists (a crashed scheduler)."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
