"""A script's parting gift: a scratch tree nested deeper than any recursion and than PATH_MAX,
with plaintext at the bottom. Cleaning up after its host (a worker reaped, a role starting)
removes it and never raises (review of #23: ``shutil.rmtree`` raised RecursionError, the
processor died with it and every role on the host then died at start)."""

from __future__ import annotations

import os
import subprocess
import sys

from rqp.sandbox import _scratch


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_tree_deeper_than_recursion_and_path_max_is_removed(tmp_path):
    top = tmp_path / f"rqp-script-{_dead_pid()}-deep"
    top.mkdir()
    here = os.getcwd()
    try:
        os.chdir(top)
        for _ in range(3000):  # 6,000 characters of path: past PATH_MAX, past the recursion limit
            os.mkdir("a")
            os.chdir("a")
        with open("plain.txt", "w") as fh:
            fh.write("record plaintext")
    finally:
        os.chdir(here)
    removed = _scratch.remove_leftovers(str(tmp_path))
    assert removed == [str(top)]
    assert not top.exists()
