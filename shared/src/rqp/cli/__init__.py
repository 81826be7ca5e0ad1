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

import sys
from typing import TYPE_CHECKING, Any

from .exits import run
from .parser import build_parser

if TYPE_CHECKING:
    from ..summary import read_summary
    from .formatting import FINISHED_STATES, format_progress, format_status
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

#: names re-exported here, imported on first use: ``rqp <command>`` loads only its own group
_LAZY = {
    "FINISHED_STATES": ".formatting",
    "format_progress": ".formatting",
    "format_status": ".formatting",
    "read_results": ".results",
    "read_summary": "..summary",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rqp.cli' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def main(argv: list[str] | None = None) -> int:
    """The ``rqp`` entry point: parse, run, exit code. The parser holds only the command's own
    group when the first argument names a built-in command (``build_parser``)."""
    args = sys.argv[1:] if argv is None else argv
    return run(build_parser(args[0] if args else None).parse_args(args))
