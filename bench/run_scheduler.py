"""``rqp-scheduler`` as the benchmark starts it: the same entry point, plus its start-up cost and
where the rest of its CPU went.

    python bench/run_scheduler.py STARTUP.json run WORKLOAD

Runs ``rqp_scheduler.cli.main`` with the remaining arguments, then writes to STARTUP.json the
CPU seconds this process had spent once the interpreter and the scheduler's modules were loaded
(before any workload is touched), and the CPU of the child processes it waited for (the script
host that checks the script before a workload starts) and the CPU seconds it had spent when the
scheduler's ``main`` returned (``end_cpu_seconds``: what the process spends after it -- the
interpreter's finalization, threads and the warm script host stopped -- is shown as the **exit**
phase, a cost per process like the start-up). The benchmark reports the scheduler's CPU
per record apart from both: a deployed scheduler is a service (``rqp-scheduler serve``) that pays
its start-up once, not once per workload, and a script host's CPU is not the scheduler's work.

It also writes the CPU and wall seconds of the scheduler's phases (``PHASES``), measured by
wrapping the functions that do them in this process only -- the scheduler itself has no switch
for it, and every phase still runs in full: **enqueue** (``Enqueuer.fill_window``: reading,
parsing, sealing the records, their input digests for the results root (HMAC-SHA256 each, stored
per transaction: ``rqp_scheduler.input_pieces``), building and sending the enqueue transactions),
**consolidate** (``consolidate``: the proof, the results object, the summary -- the results root
included) and **root** (``build_root``: the input digests read back from the enqueue's pieces --
or, after a restart or in a ``rqp retry`` round, the data read and HMACed again -- the Merkle
leaves and the signed root). The CPU clock
is the process's (every thread), so a phase's figure includes the enqueue writer thread's work
while it runs. **set-up** (``Scheduler.__init__``) is what the process costs before any workload:
the clients opened, the KEK loaded, the sandbox probed -- once per process (``rqp-scheduler
serve`` pays it once per service lifetime); **open** (``Scheduler.add``) is what a workload costs
before its first record: its signature checked, its key unwrapped, the script checked -- per run,
not per record.
"""

from __future__ import annotations

import functools
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

#: (phase, module, attribute path) of the functions timed: the first name is looked up in the
#: module the caller uses it from (``finish`` imports ``consolidate`` by name, and so on)
PHASES: tuple[tuple[str, str, str], ...] = (
    ("set-up", "rqp_scheduler.scheduler", "Scheduler.__init__"),
    ("open", "rqp_scheduler.scheduler", "Scheduler.add"),
    ("enqueue", "rqp_scheduler.run.enqueue", "Enqueuer.fill_window"),
    ("consolidate", "rqp_scheduler.run.finish", "consolidate"),
    ("root", "rqp_scheduler.consolidate", "build_root"),
    # the one pass (``rqp.results_root.RootWhileWriting``): the root's share of consolidation's
    # pass -- the input digests written, each block's rows and leaves, the checks and the signature
    ("root", "rqp.results_root", "RootWhileWriting.__init__"),
    ("root", "rqp.results_root", "RootWhileWriting.finish"),
    ("root", "rqp.results_root", "_rows_of"),
    ("root", "rqp.results_root", "_LeafMaker.feed"),
)


def _timed(spent: dict[str, list[float]], phase: str, fn: Callable[..., Any], depth: list[int]) -> Callable[..., Any]:
    """``fn``, adding the CPU and wall seconds of each call to ``spent[phase]`` (calls inside a
    call of the same phase -- re-entrant, or another function of it -- counted once: ``depth``
    is the phase's)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth[0] += 1
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                spent[phase][0] += time.process_time() - c0
                spent[phase][1] += time.perf_counter() - w0

    return wrapper


def instrument(spent: dict[str, list[float]]) -> None:
    """Wrap every function of ``PHASES`` in place; ``spent[phase]`` becomes [cpu, wall] seconds."""
    import importlib

    depths: dict[str, list[int]] = {}
    for phase, module, path in PHASES:
        owner: Any = importlib.import_module(module)
        *outer, name = path.split(".")
        for part in outer:
            owner = getattr(owner, part, None)
        spent.setdefault(phase, [0.0, 0.0])
        if owner is None or not hasattr(owner, name):
            continue  # older code (a before/after pair through PYTHONPATH) without this function
        setattr(owner, name, _timed(spent, phase, getattr(owner, name), depths.setdefault(phase, [0])))


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    from rqp_scheduler.cli import main as scheduler_main

    spent: dict[str, list[float]] = {}
    instrument(spent)
    startup = time.process_time()
    try:
        return scheduler_main(argv)
    finally:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "startup_cpu_seconds": startup,
                    "end_cpu_seconds": time.process_time(),
                    "children_cpu_seconds": children.ru_utime + children.ru_stime,
                    "phases_cpu_seconds": {k: v[0] for k, v in spent.items()},
                    "phases_wall_seconds": {k: v[1] for k, v in spent.items()},
                },
                fh,
            )


if __name__ == "__main__":
    sys.exit(main())
