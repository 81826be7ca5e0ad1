"""Process hardening for the roles that hold keys and plaintext: processors and the scheduler.

A worker's memory holds unwrapped data keys, the decrypted script and records in the clear. A
core dump would write all of that to disk (or hand it to a crash reporter such as
systemd-coredump or apport), and a debugger attaching as the same user could read it live.
``disable_core_dumps()``, called first thing in every worker and scheduler process:

* sets ``RLIMIT_CORE`` to 0 (soft and hard, so the process cannot raise it again); this is
  inherited by every child, including the workers ``rqp-processor`` spawns;
* on Linux, ``prctl(PR_SET_DUMPABLE, 0)``: no core dump even when the kernel pipes cores to a
  helper (``core_pattern = |...`` ignores RLIMIT_CORE), no ``ptrace`` attach and no reading of
  ``/proc/<pid>/mem`` or ``environ`` by other processes of the same user. The flag is per process
  and reset by ``execve``, which is why each worker calls this itself.

Python cannot promise to erase secrets from memory: ``bytes`` are immutable and may be copied by
the interpreter or OpenSSL. rqp keeps each data key in one place (the opened ``Workload``), drops
references as soon as a workload is finished (``del``), and ``wipe()`` zeroes the mutable buffers
it does control.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from dataclasses import dataclass, field

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None  # type: ignore[assignment]

__all__ = [
    "PR_GET_DUMPABLE",
    "PR_SET_DUMPABLE",
    "Hardening",
    "core_limit",
    "disable_core_dumps",
    "harden_process",
    "is_dumpable",
    "wipe",
]

log = logging.getLogger("rqp.hardening")

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class Hardening:
    """What ``disable_core_dumps`` achieved in this process."""

    #: RLIMIT_CORE is (0, 0)
    core_limit_zero: bool
    #: prctl(PR_SET_DUMPABLE, 0) succeeded (Linux only)
    not_dumpable: bool
    #: one line per measure that could not be applied, and why
    problems: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return self.core_limit_zero and (self.not_dumpable or not sys.platform.startswith("linux"))


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _prctl(option: int, arg: int = 0) -> int:
    libc = _libc()
    if libc is None:
        raise OSError("prctl is not available on this platform")
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    rc = prctl(option, arg, 0, 0, 0)
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}) failed: errno {err}")
    return rc


def core_limit() -> tuple[int, int] | None:
    """This process's (soft, hard) RLIMIT_CORE, or None where there is no such limit."""
    if resource is None:
        return None
    return resource.getrlimit(resource.RLIMIT_CORE)


def is_dumpable() -> bool | None:
    """prctl(PR_GET_DUMPABLE) as a bool, or None where prctl is unavailable."""
    try:
        return _prctl(PR_GET_DUMPABLE) != 0
    except OSError:
        return None


def disable_core_dumps() -> Hardening:
    """No core dumps and no same-user ptrace for this process (and no core dumps for its
    children). Never raises: what could not be done is in ``Hardening.problems``."""
    problems: list[str] = []
    core_zero = False
    if resource is not None:
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            core_zero = resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
        except (ValueError, OSError) as exc:
            problems.append(f"cannot set RLIMIT_CORE to 0: {exc}")
    else:
        problems.append("RLIMIT_CORE is not available on this platform")
    not_dumpable = False
    if sys.platform.startswith("linux"):
        try:
            _prctl(PR_SET_DUMPABLE, 0)
            not_dumpable = _prctl(PR_GET_DUMPABLE) == 0
        except OSError as exc:
            problems.append(f"cannot clear the dumpable flag: {exc}")
    return Hardening(core_zero, not_dumpable, tuple(problems))


def harden_process(role: str = "rqp") -> Hardening:
    """``disable_core_dumps()`` and a warning in the log for whatever could not be applied; what
    worker and scheduler entry points call before they unwrap any key."""
    result = disable_core_dumps()
    for problem in result.problems:
        log.warning("%s: %s; a crash of this process could write keys and plaintext to disk", role, problem)
    return result


def wipe(buf: bytearray | memoryview) -> None:
    """Overwrite a mutable buffer with zeros (for plaintext rqp holds in a ``bytearray``)."""
    view = memoryview(buf).cast("B")
    view[:] = b"\0" * len(view)
