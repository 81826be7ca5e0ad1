"""Script hosts' scratch directories: where they are, whose they are, and who removes them.

A script may write its records' plaintext to its ``TMPDIR`` (that is what scratch space is for).
The directory is removed when its host ends (``ScriptHost.close``), but a SIGKILLed worker
(the OOM killer) never gets to that, and its host dies with it (``PDEATHSIG``). So every
directory is named for the role process that made it -- ``rqp-script-<pid>-<random>`` -- and:

* the supervisor removes a dead worker's directories when it reaps it
  (``remove_leftovers(pid=...)``, called by ``rqp-processor``);
* every role removes, when it starts (``probe``), the directories of any process that is gone
  (a SIGKILLed supervisor or scheduler, a reboot without a tmpfs ``/tmp``).

A directory of a process that is still alive is never touched: another processor on the same
host may share the temporary directory.

Where hosts run under their own uid and the role cannot give a directory away (no ``CAP_CHOWN``:
the images' roles hold only ``CAP_SETUID``/``CAP_SETGID``), a short child of the role that has
become the host's uid makes the directory (``make_as``), and removes it when the role cannot
(``remove``): the role never needs to override permissions on what a host wrote.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tempfile
from pathlib import Path

from . import _identity

__all__ = ["PREFIX", "make", "make_as", "remove", "remove_leftovers"]

PREFIX = "rqp-script-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-[A-Za-z0-9_]+\Z")

log = logging.getLogger("rqp.sandbox")


def make(root: str | None) -> str:
    """A new private (0700) scratch directory for a host of this process."""
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root)


def make_as(root: str | None, uid: int, gid: int) -> str:
    """A new private (0700) scratch directory made by ``uid``/``gid`` itself, named like ``make``'s
    (for this process). Needs ``CAP_SETUID``/``CAP_SETGID`` and a root that uid may write to
    (a ``mode=1777`` tmpfs); raises OSError otherwise."""
    base = root or tempfile.gettempdir()
    prefix = f"{PREFIX}{os.getpid()}-"
    got = _identity.run_as(uid, gid, lambda: tempfile.mkdtemp(prefix=prefix, dir=base).encode())
    if got is None:
        raise PermissionError(1, f"uid {uid} cannot make a directory in {base}")
    return got.decode()


def _dirs(path: Path) -> list[str]:
    """Every directory under ``path`` (itself first), found with an explicit stack: a script can
    nest directories thousands deep, deeper than any recursion (``os.walk`` and ``shutil.rmtree``
    recurse in Python 3.11) -- cleaning up after it must never raise."""
    found: list[str] = []
    stack = [os.fspath(path)]
    while stack:
        d = stack.pop()
        found.append(d)
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(e.path)
                    except OSError:
                        continue
        except OSError:
            continue
    return found


def _reclaim(path: Path) -> None:
    """Make a host's directory tree the role's again, top down, so it can be removed by a role
    that could give it away (``CAP_CHOWN``) but cannot override permissions."""
    uid, gid = os.geteuid(), os.getegid()
    for d in _dirs(path):
        try:
            os.chown(d, uid, gid, follow_symlinks=False)
            os.chmod(d, 0o700, follow_symlinks=False)
        except (OSError, NotImplementedError):
            pass


#: directory entries ``_rmtree`` handles at most (a bound, not a limit anyone meets)
_RMTREE_STEPS = 10_000_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _rmtree(path: Path) -> bytes:
    """Remove ``path`` and everything in it without recursion and without long paths: one
    directory descriptor at a time, walking down by name and back up by ``..`` -- a tree nested
    deeper than any recursion or PATH_MAX (a script's parting gift) goes like any other. Never
    raises; what it cannot remove stays (and is reported by ``remove``)."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError:
        return b""
    names: list[str] = []
    try:
        for _ in range(_RMTREE_STEPS):
            sub = None
            with os.scandir(fd) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            sub = sub or e.name
                        else:
                            os.unlink(e.name, dir_fd=fd)
                    except OSError:
                        continue
            if sub is not None:
                try:
                    child = os.open(sub, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    return b""
                os.close(fd)
                fd = child
                names.append(sub)
                continue
            if not names:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            try:
                os.rmdir(names.pop(), dir_fd=fd)
            except OSError:
                return b""  # cannot go: the caller sees the tree is still there
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass
    return b""


def remove(path: str | Path) -> bool:
    """Remove a scratch directory and everything in it; True when it is gone. A host dying with
    its worker may still add a file as it goes, hence the second try."""
    entry = Path(path)
    for attempt in range(3):
        _rmtree(entry)
        if not os.path.lexists(entry):
            return True
        if attempt == 0:
            _reclaim(entry)  # owned by the host's uid: take it back first
        try:
            st = entry.lstat()
        except OSError:
            return True
        if st.st_uid not in (0, os.geteuid()) and st.st_gid != 0 and stat.S_ISDIR(st.st_mode):
            # still the host's (no CAP_CHOWN to take it back): its own uid removes it
            _identity.run_as(st.st_uid, st.st_gid, lambda: _rmtree(entry))
    return not os.path.lexists(entry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def remove_leftovers(root: str | None = None, pid: int | None = None) -> list[str]:
    """Remove the scratch directories left by process ``pid`` (a worker just reaped), or, without
    ``pid``, by every process that no longer exists. Returns what was removed; never raises."""
    base = Path(root or tempfile.gettempdir())
    removed: list[str] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _NAME.match(entry.name)
        if not m:
            continue
        owner = int(m.group(1))
        if (pid is not None and owner != pid) or (pid is None and (owner == os.getpid() or _alive(owner))):
            continue
        try:
            if entry.is_symlink() or not entry.is_dir():
                continue
        except OSError:
            continue
        try:
            gone = remove(entry)
        except Exception:
            log.exception("could not remove %s, left by process %d", entry, owner)
            gone = False
        if gone:
            removed.append(str(entry))
        else:
            log.warning("could not remove %s, left by process %d; remove it by hand", entry, owner)
    if removed:
        log.info("removed %d scratch directories left by script hosts of ended processes", len(removed))
    return removed
