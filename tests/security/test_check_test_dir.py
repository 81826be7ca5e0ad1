"""``make test`` stops first, in one line, when the sandbox's uid cannot search the clone.

Run as root, the sandbox tests run scripts as uid 65534 with the clone's interpreter; a clone
under a directory that uid cannot search (``/root``) used to fail those tests far from the cause.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rqp.sandbox._identity import DEFAULT_SANDBOX_UID, can_set_ids

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "tools" / "check_test_dir.py"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory in /tmp that any uid can search (pytest's own tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="rqp-clone-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), "--root", str(root)], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_clone_under_a_private_directory_is_one_line_naming_it_and_the_fix(shared_dir):
    private = shared_dir / "home"
    clone = private / "rqp"
    clone.mkdir(parents=True)
    private.chmod(0o700)
    got = _check(clone)
    if not can_set_ids():  # no other uid to run scripts as: nothing to check
        assert (got.returncode, got.stderr) == (0, ""), got.stderr
        return
    assert got.returncode == 1, got.stderr
    line = got.stderr.strip()
    assert "\n" not in line, line
    assert f"{private} is not searchable by uid {DEFAULT_SANDBOX_UID}" in line, line
    assert f"chmod o+x {private}" in line and "clone rqp under a directory it can search" in line, line


def test_a_searchable_clone_passes(shared_dir):
    clone = shared_dir / "rqp"
    clone.mkdir()
    got = _check(clone)
    assert (got.returncode, got.stderr) == (0, ""), got.stderr


def test_make_test_checks_before_it_installs_anything():
    for target in ("test", "test-fast"):
        # --no-print-directory: under 'make test' (MAKELEVEL set) make prints "Entering directory" first
        got = subprocess.run(
            ["make", "--no-print-directory", "-n", target],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert got.stdout.splitlines()[0].endswith("tools/check_test_dir.py"), (target, got.stdout[:500])
