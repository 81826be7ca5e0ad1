"""One rqp worker process (the processor's own worker module) under cProfile, CPU clock.

    python bench/profile_worker.py OUT.prof [WORKLOAD]

Builds the worker exactly as ``rqp-processor`` does (``rqp_processor.worker.build_worker``),
opens WORKLOAD's context first (key unwrap and script import are once per workload, not hot
path), then profiles ``worker.work()`` -- RQ's dequeue and bookkeeping and rqp's chunk code --
with ``time.process_time`` as the clock, so time blocked waiting for Redis or for work is not
counted. SIGTERM ends it (RQ's warm shutdown) and the profile is written.
"""

from __future__ import annotations

import cProfile
import sys
import time

from rqp.config import Settings
from rqp_processor import worker as worker_module


def main() -> int:
    out = sys.argv[1]
    settings = Settings.load()
    worker = worker_module.build_worker(settings)
    if len(sys.argv) > 2:
        worker.processor.contexts.get(sys.argv[2])
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    try:
        worker.work(burst=False, logging_level="WARNING", with_scheduler=False)
    finally:
        prof.disable()
        prof.dump_stats(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
