"""rqp scheduler: turns a packed workload into chunks of RQ jobs and supervises them to the end."""

from .cli import Scheduler
from .consolidate import consolidate
from .run import WorkloadRun

__all__ = ["Scheduler", "WorkloadRun", "consolidate"]
