"""Confine the current process before it runs a workload's script: what Linux gives an
unprivileged process in a container with no capabilities.

Standard library only: this module is imported by the script host (``_host.py``), a fresh
interpreter that must not load rqp's dependencies or anything else the script could reach.

Layers, each applied to this process only and inherited by nothing (the host cannot start
processes):

* ``PR_SET_NO_NEW_PRIVS``, which Landlock and seccomp need without ``CAP_SYS_ADMIN``;
* **rlimits**: address space (memory), CPU seconds, open files, file size, no core dumps;
* **Landlock** (kernel 5.13+): the file system becomes read-only library paths plus one private
  temporary directory, read-write; with ABI 4+ no TCP bind/connect, with ABI 6+ no signals to
  and no abstract Unix sockets of processes outside the sandbox;
* **no capabilities** (ambient, effective, permitted, inheritable all cleared);
* **seccomp**, an allowlist (``_allowlist``): every call it does not name fails with ``EPERM``, so
  the script sees a Python ``PermissionError`` instead of dying. Threads are allowed (``clone``
  with ``CLONE_THREAD`` and no namespace flag; ``clone3`` answers ``ENOSYS`` so the C library
  falls back to ``clone``), ``prlimit64`` only reads, ``kill``/``tgkill`` only reach this
  process, ``ioctl`` takes only CPython's own requests;
* **tried refusals**: after all of that the host makes a few calls that must fail (a chmod, a
  socket, a read outside Landlock, a fork, ``setpriority``, its old uid back) and reports any
  that did not -- what ``RQP_REQUIRE_SANDBOX`` checks.

The uid a host runs as is chosen by the role before it starts (``_identity``).

``apply`` never raises for a layer the kernel lacks: the report says what is active, and the
caller (``RQP_REQUIRE_SANDBOX``) decides whether that is enough.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import struct
import sys

try:
    from . import _allowlist
except ImportError:  # inside the script host, where this directory is imported as top-level modules
    import _allowlist  # type: ignore[import-not-found,no-redef]

__all__ = ["REQUIRED", "apply", "landlock_abi"]

#: the layers ``RQP_REQUIRE_SANDBOX=true`` insists on
REQUIRED = ("no_new_privs", "no_capabilities", "rlimits", "landlock_fs", "seccomp")

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2

# ------------------------------------------------------------------------------- Landlock
SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture (added after 5.x)
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

_FS_ABI1 = (1 << 13) - 1
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
_READ = FS_READ_FILE | FS_READ_DIR | FS_EXECUTE
_PATH_BENEATH = struct.Struct("=Qi")


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when Landlock is missing or disabled."""
    if not sys.platform.startswith("linux"):
        return 0
    abi = _syscall(
        SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)
    )
    return max(0, abi)


def _handled_fs(abi: int) -> int:
    rights = _FS_ABI1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def _landlock(read: list[str], write: list[str], devices: list[str]) -> dict[str, object]:
    abi = landlock_abi()
    if abi < 1:
        err = ctypes.get_errno()
        why = {
            errno.ENOSYS: "the kernel has no Landlock",
            errno.EOPNOTSUPP: "Landlock is disabled (boot with lsm=...,landlock)",
            errno.EPERM: "Landlock is blocked (a container seccomp profile?)",
        }.get(err, f"errno {err}")
        return {"landlock_fs": False, "landlock_abi": 0, "landlock_problem": why}
    fs = _handled_fs(abi)
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("=QQQ", fs, net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _syscall(SYS_LANDLOCK_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        return {
            "landlock_fs": False,
            "landlock_abi": abi,
            "landlock_problem": f"cannot create a ruleset (errno {ctypes.get_errno()})",
        }
    read_rights = _READ & fs
    write_rights = fs & ~(FS_MAKE_CHAR | FS_MAKE_BLOCK | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_IOCTL_DEV | FS_EXECUTE)
    try:
        added = []
        for paths, rights in (
            (read, read_rights),
            (write, write_rights),
            (devices, (FS_READ_FILE | FS_WRITE_FILE) & fs),
        ):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue  # a path this system does not have
                try:
                    allowed = rights if os.path.isdir(path) else rights & _FILE_RIGHTS
                    rule = ctypes.create_string_buffer(_PATH_BENEATH.pack(allowed, fd), _PATH_BENEATH.size)
                    if (
                        _syscall(
                            SYS_LANDLOCK_ADD_RULE,
                            ctypes.c_int(ruleset),
                            ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                            rule,
                            ctypes.c_uint32(0),
                        )
                        < 0
                    ):
                        return {
                            "landlock_fs": False,
                            "landlock_abi": abi,
                            "landlock_problem": f"cannot add a rule for {path} (errno {ctypes.get_errno()})",
                        }
                    added.append(path)
                finally:
                    os.close(fd)
        if _syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
            return {
                "landlock_fs": False,
                "landlock_abi": abi,
                "landlock_problem": f"landlock_restrict_self failed (errno {ctypes.get_errno()})",
            }
    finally:
        os.close(ruleset)
    return {
        "landlock_fs": True,
        "landlock_abi": abi,
        "landlock_net": bool(net),
        "landlock_scopes": bool(scoped),
        "landlock_paths": len(added),
    }


# -------------------------------------------------------------------------------- seccomp
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
#: namespace flags ``clone`` may never carry (CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
#: NEWUSER, NEWPID, NEWNET)
CLONE_NAMESPACES = 0x00000080 | 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
CLONE_THREAD = 0x00010000
X32_SYSCALL_BIT = 0x40000000

_LD_W_ABS = 0x20
_JEQ = 0x15
_JSET = 0x45
_JGE = 0x35
_JA = 0x05
_RET = 0x06
RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
_OFF_NR = 0
_OFF_ARCH = 4


def _arg_lo(i: int) -> int:
    return 16 + 8 * i  # little-endian: the low 32 bits of args[i]


def _arg_hi(i: int) -> int:
    return 20 + 8 * i


def _seccomp_program(arch: str, own_pid: int) -> list[tuple[int, int, int, int]]:
    """A classic-BPF allowlist: (code, jt, jf, k) instructions. What ``_allowlist`` does not
    name fails with ``EPERM`` -- the script sees a ``PermissionError`` and only its record
    fails. Two answers differ on purpose: ``clone3`` gets ``ENOSYS`` (the C library then uses
    ``clone``, whose flags a filter can read), and a call through another ABI (x86's
    ``int 0x80``, x32) kills the host: no CPython makes one, so it is an attack, and the
    numbers of another ABI cannot be judged by this list."""
    plain = _allowlist.PLAIN[arch]
    nr = _allowlist.CHECKED[arch]
    eperm = RET_ERRNO | errno.EPERM
    prog: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ, 1, 0, AUDIT_ARCH[arch]),
        (_RET, 0, 0, RET_KILL_PROCESS),  # another ABI (x86 int 0x80, ...): not ours to allow
        (_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if arch == "x86_64":
        prog += [(_JGE, 0, 1, X32_SYSCALL_BIT), (_RET, 0, 0, RET_KILL_PROCESS)]
    for number in plain.values():
        prog += [(_JEQ, 0, 1, number), (_RET, 0, 0, RET_ALLOW)]
    # clone: threads only (CLONE_THREAD set in the flags, the first argument), no namespace flag
    prog += [
        (_JEQ, 0, 5, nr["clone"]),
        (_LD_W_ABS, 0, 0, _arg_lo(0)),
        (_JSET, 0, 2, CLONE_THREAD),
        (_JSET, 1, 0, CLONE_NAMESPACES),
        (_RET, 0, 0, RET_ALLOW),
        (_RET, 0, 0, eperm),
        (_JEQ, 0, 1, nr["clone3"]),
        (_RET, 0, 0, RET_ERRNO | errno.ENOSYS),
    ]
    # prlimit64(pid, resource, new, old): reading is fine, setting is not (new == NULL)
    prog += [
        (_JEQ, 0, 6, nr["prlimit64"]),
        (_LD_W_ABS, 0, 0, _arg_lo(2)),
        (_JEQ, 0, 3, 0),
        (_LD_W_ABS, 0, 0, _arg_hi(2)),
        (_JEQ, 0, 1, 0),
        (_RET, 0, 0, RET_ALLOW),
        (_RET, 0, 0, eperm),
    ]
    # kill(pid, sig) and tgkill(tgid, tid, sig): only this process (signal.raise_signal, os.abort)
    for name in ("kill", "tgkill"):
        prog += [
            (_JEQ, 0, 6, nr[name]),
            (_LD_W_ABS, 0, 0, _arg_lo(0)),
            (_JEQ, 0, 3, own_pid),
            (_LD_W_ABS, 0, 0, _arg_hi(0)),
            (_JEQ, 0, 1, 0),
            (_RET, 0, 0, RET_ALLOW),
            (_RET, 0, 0, eperm),
        ]
    # ioctl(fd, request, ...): only the requests CPython makes on its own descriptors (the
    # request is an unsigned int: its low 32 bits are all of it)
    requests = list(_allowlist.IOCTLS.values())
    prog += [(_JEQ, 0, 3 + len(requests), nr["ioctl"]), (_LD_W_ABS, 0, 0, _arg_lo(1))]
    for i, request in enumerate(requests):
        prog.append((_JEQ, len(requests) - i, 0, request))
    prog += [(_RET, 0, 0, eperm), (_RET, 0, 0, RET_ALLOW)]
    # fcntl(fd, cmd, ...): the commands of FCNTLS only -- no leases, no dnotify, no F_SETOWN
    commands = list(_allowlist.FCNTLS.values())
    prog += [(_JEQ, 0, 3 + len(commands), nr["fcntl"]), (_LD_W_ABS, 0, 0, _arg_lo(1))]
    for i, command in enumerate(commands):
        prog.append((_JEQ, len(commands) - i, 0, command))
    prog += [(_RET, 0, 0, eperm), (_RET, 0, 0, RET_ALLOW)]
    prog.append((_RET, 0, 0, eperm))  # everything else
    return prog


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _seccomp() -> dict[str, object]:
    arch = os.uname().machine
    if arch not in _allowlist.PLAIN:
        return {"seccomp": False, "seccomp_problem": f"no seccomp filter for architecture {arch}"}
    prog = _seccomp_program(arch, os.getpid())
    filters = (_SockFilter * len(prog))(*[_SockFilter(c, jt, jf, k & 0xFFFFFFFF) for c, jt, jf, k in prog])
    fprog = _SockFprog(len(prog), filters)
    rc = _prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0)
    if rc != 0:
        return {"seccomp": False, "seccomp_problem": f"cannot install the filter (errno {ctypes.get_errno()})"}
    return {"seccomp": True, "seccomp_allowed": len(_allowlist.allowed(arch))}


# -------------------------------------------------------------------------------- rlimits
def _rlimits(memory_bytes: int, cpu_seconds: int, open_files: int, file_bytes: int) -> dict[str, object]:
    problems = []
    wanted = [
        (resource.RLIMIT_CORE, 0, 0, "core"),
        (resource.RLIMIT_AS, memory_bytes, memory_bytes, "memory"),
        # SIGXCPU at the soft limit, SIGKILL a few seconds later should it be ignored
        (resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 5, "cpu"),
        (resource.RLIMIT_NOFILE, open_files, open_files, "open files"),
        (resource.RLIMIT_FSIZE, file_bytes, file_bytes, "file size"),
    ]
    for res, want_soft, want_hard, name in wanted:
        try:
            _, cur_hard = resource.getrlimit(res)
            # a limit already lower than wanted (the container's) stays: never raised
            hard = want_hard if cur_hard == resource.RLIM_INFINITY else min(want_hard, cur_hard)
            resource.setrlimit(res, (min(want_soft, hard), hard))
        except (ValueError, OSError) as exc:
            problems.append(f"{name}: {exc}")
    return {"rlimits": not problems, "rlimit_problems": problems}


# ----------------------------------------------------------------------- capabilities
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_capabilities() -> dict[str, object]:
    """No capability left, whatever the role had (a role given CAP_SETUID as an ambient
    capability passes it to a child that switches between two non-root uids): dropping is
    always allowed. Then read back what the kernel says this process holds."""
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _libc.capset(ctypes.byref(header), data)
    held = []
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith((b"CapEff:", b"CapPrm:", b"CapAmb:", b"CapInh:")) and int(line.split()[1], 16):
                    held.append(line.split(b":")[0].decode())
    except (OSError, ValueError):
        held.append("unknown (no /proc/self/status)")
    return {"no_capabilities": not held, "capabilities_held": held}


# ------------------------------------------------------------- denials, tried for real
def _refused(fn) -> bool:  # type: ignore[no-untyped-def]
    try:
        fn()
    except PermissionError:
        return True
    except OSError as exc:
        return exc.errno in (errno.EPERM, errno.EACCES)
    return False


def _try_fork() -> None:
    pid = os.fork()
    if pid == 0:  # the filter let it through: the child leaves at once
        os._exit(0)
    os.waitpid(pid, 0)


def _try_socket() -> None:
    fd = _libc.socket(1, 1, 0)  # AF_UNIX, SOCK_STREAM, through the C library's own call
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    os.close(fd)


def _try_denied(tmpdir: str, role_uid: int, report: dict[str, object]) -> list[str]:
    """``RQP_REQUIRE_SANDBOX`` checks what a host cannot do by doing it, once per host (not per
    record): a metadata change on its own scratch directory, a socket, a read outside what
    Landlock grants, a fork, and getting the role's uid back. Each must be refused; returns
    those that were not (and notes all of it in ``report``)."""
    tries = {
        "chmod": lambda: os.chmod(tmpdir, 0o700),
        "socket": _try_socket,
        "read outside": lambda: os.listdir(os.path.dirname(tmpdir) or "/"),
        "fork": _try_fork,
        "setpriority": lambda: os.setpriority(os.PRIO_PROCESS, 0, 1),
    }
    if os.getuid() != role_uid:
        tries["back to the role's uid"] = lambda: os.setresuid(role_uid, role_uid, role_uid)
    allowed = [name for name, fn in tries.items() if not _refused(fn)]
    report.update(denials=not allowed, denials_tried=sorted(tries), denials_failed=allowed)
    return allowed


# ---------------------------------------------------------------------------------- apply
def _prctl_ok(option: int, arg: int) -> bool:
    return _prctl(option, arg, 0, 0, 0) == 0


def apply(config: dict) -> dict[str, object]:  # (untyped: the host imports no typing)
    """Confine this process as ``config`` says; returns the report (never raises)."""
    u = os.uname()
    report: dict[str, object] = {"platform": f"{u.sysname} {u.release} {u.machine}"}
    report["pdeathsig"] = _prctl_ok(PR_SET_PDEATHSIG, 9)  # the worker goes, the host goes
    report["not_dumpable"] = _prctl_ok(PR_SET_DUMPABLE, 0)
    report.update(
        _rlimits(
            int(config["memory_bytes"]),
            int(config["cpu_seconds"]),
            int(config["open_files"]),
            int(config["file_bytes"]),
        )
    )
    report["uid"], report["gid"] = os.getuid(), os.getgid()
    report.update(_drop_capabilities())
    report["no_new_privs"] = _prctl_ok(PR_SET_NO_NEW_PRIVS, 1)
    if report["no_new_privs"]:
        report.update(_landlock(list(config["read_paths"]), [config["tmpdir"]], list(config.get("devices", ()))))
        report.update(_seccomp())
    else:
        report.update(
            landlock_fs=False,
            seccomp=False,
            landlock_problem="no_new_privs could not be set",
            seccomp_problem="no_new_privs could not be set",
        )
    not_refused = _try_denied(config["tmpdir"], int(config.get("role_uid", -1)), report)
    missing = [layer for layer in REQUIRED if not report.get(layer)]
    if not_refused:
        missing.append("refusals (" + ", ".join(not_refused) + " not refused)")
    report["missing"] = missing
    return report
