"""rqp-console: a live web console for rqp's operators.

Workloads (progress, rate over time, ETA), one workload's timeline, chunks in flight, failures
and retries, the fleet of processors and workers with their sandbox protections, rejected jobs,
VM health from the metrics logger's store, and the actions (pause, resume, cancel, retry) --
behind a login, on a read-only Redis identity for everything but the actions.
"""

__version__ = "0.1.0"
