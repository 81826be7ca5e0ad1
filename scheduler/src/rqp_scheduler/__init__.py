"""rqp scheduler: turns a packed workload into chunks of RQ jobs and supervises them to the end."""

from .consolidate import consolidate
from .run import WorkloadRun
from .scheduler import Scheduler

__all__ = ["Scheduler", "WorkloadRun", "consolidate"]
