#!/usr/bin/env python3
"""check_test_dir.py -- before ``make test``: can the sandbox's uid search the way to this clone?

Run as root (or with CAP_SETUID/CAP_SETGID), the sandbox tests run the scripts as uid 65534
(``RQP_SANDBOX_UID``'s default, "nobody"), with the clone's ``.venv`` interpreter. A clone under a
directory that uid cannot search (``/root``, a 0700 home) does not stop the suite: the sandbox
falls back to the role's uid and says so, and the uid tests fail far from the cause. This says it
at once, in one line naming the directory and the fix, and exits 1. Without the capabilities
there is no other uid to run as: nothing to check, exit 0. Standard library and the source tree
only, so ``make test`` runs it before it installs anything.

    python3 tools/check_test_dir.py [--root DIR]   # DIR: the clone (default: this one)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# run before the virtualenv exists (make's first step): the sandbox's own rule, from the source tree
sys.path.insert(0, str(ROOT / "shared" / "src"))


def problem(root: Path) -> str | None:
    """One line saying why the sandbox's uid cannot reach ``root``; None when it can (or when
    there is no other uid to run as here)."""
    from rqp.sandbox._identity import DEFAULT_SANDBOX_UID, _searchable_by, can_set_ids

    if not can_set_ids():
        return None
    blocked = _searchable_by(str(root), DEFAULT_SANDBOX_UID, DEFAULT_SANDBOX_UID)
    if blocked is None:
        return None
    return (
        f"make test: {blocked} is not searchable by uid {DEFAULT_SANDBOX_UID}, as which the sandbox tests run "
        f"scripts from {root}: clone rqp under a directory it can search (e.g. /srv, /opt) or run 'chmod o+x {blocked}'"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="check_test_dir.py", description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="the clone (default: the one this file is in)")
    args = ap.parse_args(argv)
    line = problem(args.root.resolve())
    if line is not None:
        print(line, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
