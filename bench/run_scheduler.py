"""``rqp-scheduler`` as the benchmark starts it: the same entry point, plus its start-up cost.

    python bench/run_scheduler.py STARTUP.json run WORKLOAD

Writes to STARTUP.json the CPU seconds this process had spent once the interpreter and the
scheduler's modules were loaded (before any workload is touched), then runs
``rqp_scheduler.cli.main`` with the remaining arguments. The benchmark reports the scheduler's
CPU per record with and without that fixed start-up: a deployed scheduler is a service
(``rqp-scheduler serve``) that pays it once, not once per workload.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    from rqp_scheduler.cli import main as scheduler_main

    with open(out, "w", encoding="utf-8") as fh:
        json.dump({"startup_cpu_seconds": time.process_time()}, fh)
    return scheduler_main(argv)


if __name__ == "__main__":
    sys.exit(main())
