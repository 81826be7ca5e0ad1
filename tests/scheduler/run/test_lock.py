"""``RunLock``: one scheduler per workload; a crashed one's lock (a dead process of this host)
is taken over at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from rqp.errors import WorkloadError
from rqp_scheduler.run.context import RunContext
from rqp_scheduler.run.lock import RunLock


def _lock_of(world, wid: str, me: str) -> RunLock:
    ctx = RunContext(world.backends(), wid)
    ctx.me = me
    return RunLock(ctx)


def test_a_second_scheduler_is_refused_with_the_holder_named(world):
    run = world.run(world.pack("locked", [{"n": 1}]))
    other = _lock_of(world, run.id, "elsewhere:1")
    with pytest.raises(WorkloadError, match=f"already being scheduled by {run.ctx.me}; wait for it"):
        other.take()
    with pytest.raises(WorkloadError, match="another scheduler took over its lock"):
        other.renew()
    run.lock.renew()  # the holder still has it


def test_the_lock_of_a_dead_scheduler_of_this_host_is_taken_over(world):
    run = world.run(world.pack("crashed", [{"n": 1}]))
    run.lock.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run.ledger.take_lock(f"{socket.gethostname()}:{dead.stdout.strip()}", 30)
    run.lock.take()  # no wait for the TTL
    run.lock.renew()
    run.lock.release()
    run.ledger.take_lock(f"{socket.gethostname()}:{os.getppid()}", 30)  # alive
    with pytest.raises(WorkloadError, match="already being scheduled"):
        run.lock.take()
