"""``rqp``: the user's command line.

Every failure prints one line, ``rqp: error: <what is wrong and how to fix it>``, and exits with
the error's ``exit_code`` (see ``rqp.errors``).

The package, module by module:

* ``parser``      -- the parser, the shared options, plugins' commands (``rqp.commands``);
* ``exits``       -- a command's failure to its one line and exit code;
* ``context``     -- what a command starts from: ``Settings``, ``Backends``, the workload, the actor;
* ``formatting``  -- progress bars, status lines, tables, durations and the one time formatter;
* ``keys``        -- keygen, signer, rotate-key;
* ``workloads``   -- pack, submit, list;
* ``status``      -- status;
* ``fleet``       -- fleet: how many processors the backlog wants;
* ``record_keys`` -- ``status --record`` by a record's own key;
* ``results``     -- results;
* ``csv_results`` -- ``results --format csv``: flat results as columns;
* ``events``      -- events;
* ``control``     -- pause, resume, cancel, retry, priority, delete;
* ``audit``       -- rejected, audit;
* ``acl``         -- redis-acl.
"""

from __future__ import annotations

from ..summary import read_summary
from .exits import run
from .formatting import FINISHED_STATES, format_progress, format_status
from .parser import build_parser
from .results import read_results

__all__ = [
    "FINISHED_STATES",
    "build_parser",
    "format_progress",
    "format_status",
    "main",
    "read_results",
    "read_summary",
]


def main(argv: list[str] | None = None) -> int:
    """The ``rqp`` entry point: parse, run, exit code."""
    return run(build_parser().parse_args(argv))
