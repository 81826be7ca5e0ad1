"""``rqp-scheduler`` as the benchmark starts it: the same entry point, plus its start-up cost.

    python bench/run_scheduler.py STARTUP.json run WORKLOAD

Runs ``rqp_scheduler.cli.main`` with the remaining arguments, then writes to STARTUP.json the
CPU seconds this process had spent once the interpreter and the scheduler's modules were loaded
(before any workload is touched), and the CPU of the child processes it waited for (the script
host that checks the script before a workload starts). The benchmark reports the scheduler's CPU
per record apart from both: a deployed scheduler is a service (``rqp-scheduler serve``) that pays
its start-up once, not once per workload, and a script host's CPU is not the scheduler's work.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    from rqp_scheduler.cli import main as scheduler_main

    startup = time.process_time()
    try:
        return scheduler_main(argv)
    finally:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(
                {"startup_cpu_seconds": startup, "children_cpu_seconds": children.ru_utime + children.ru_stime}, fh
            )


if __name__ == "__main__":
    sys.exit(main())
