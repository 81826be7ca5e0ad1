"""``rqp-scheduler run W`` under cProfile with a CPU clock, imports included.

    python bench/profile_scheduler.py OUT.prof run WORKLOAD

The scheduler's entry point is imported inside the profile, so the profile names everything its
process spends CPU on -- start-up (imports, key unwrap), reading and sealing the records,
waiting between steps, consolidation -- with ``time.process_time`` as the clock (time blocked
on Redis or on the workers is not counted). ``make bench``'s ``profile`` key runs it.
"""

from __future__ import annotations

import cProfile
import sys
import time


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    try:
        from rqp_scheduler.cli import main as scheduler_main

        code = scheduler_main(argv)
    finally:
        prof.disable()
        prof.dump_stats(out)
    return code


if __name__ == "__main__":
    sys.exit(main())
