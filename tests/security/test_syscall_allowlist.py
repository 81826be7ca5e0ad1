"""The script host's seccomp filter is an allowlist (issue 23, item 1): every system call it does
not name fails, from a real confined host, and each attack of the review that broke the old
denylist fails with it.

The host is the real one (``ScriptPool`` with the sandbox on, as the roles run it); the script
makes the calls through ``ctypes`` so nothing in Python's own wrappers stands between it and the
kernel.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rqp.sandbox import CRASHED, OK, RAISED, SandboxConfig, ScriptPool
from rqp.sandbox import _allowlist as allowlist

TABLE = Path(__file__).with_name("data") / "syscalls_x86_64.txt"
HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
#: beyond the named table: every number up to here (new or unassigned calls) must fail too
HIGHEST = 1023
#: calls the kernel lets through every seccomp filter (``uretprobe``, ``uprobe``: Linux 6.11+
#: and 6.16+): they serve the uprobe trampoline, and from anywhere else they kill the caller
#: with SIGILL or fail. Tested on their own: the record fails alone, the host is replaced.
KERNEL_EXEMPT = {"uretprobe": 335, "uprobe": 336}

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="the shipped table is x86_64's")

CALLER = r"""
import ctypes, errno, json, os

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def call(nr, *args):
    ctypes.set_errno(0)
    args = [ctypes.c_long(a) for a in args] + [ctypes.c_long(0)] * (6 - len(args))
    rc = libc.syscall(ctypes.c_long(nr), *args)
    return [rc, ctypes.get_errno()]


def process(record):
    if "numbers" in record:
        return {str(nr): call(nr) for nr in record["numbers"]}
    name, args = record["call"]
    args = [os.getppid() if a == "PPID" else os.getpid() if a == "PID" else a for a in args]
    return call(name, *args)
"""


def _table() -> dict[str, int]:
    out = {}
    for line in TABLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, nr = line.split()
            out[name] = int(nr)
    return out


@pytest.fixture(scope="module")
def pool() -> Iterator[ScriptPool]:
    p = ScriptPool(SandboxConfig(record_timeout=30, memory_mb=512), warm=False)
    yield p
    p.close()


def _run(pool: ScriptPool, source: str, records: list[dict]) -> list[tuple[int, bytes]]:
    return pool.run(f"w{abs(hash(source)) % 10**6}", source.encode, [json.dumps(r).encode() for r in records])


def test_the_shipped_table_matches_the_kernel_headers_where_they_are_installed():
    if not HEADER.exists():
        pytest.skip(f"{HEADER} is not installed (apt-get install linux-libc-dev)")
    names = {}
    for line in HEADER.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("__NR_") and parts[2].isdigit():
            names[parts[1][5:]] = int(parts[2])
    assert _table() == names


def test_the_allowlist_is_short_and_named_in_the_kernels_table():
    table = _table()
    allowed = allowlist.allowed("x86_64")
    assert len(allowed) < 130, len(allowed)
    for name, nr in allowed.items():
        assert table[name] == nr, name


def test_every_system_call_not_on_the_allowlist_fails_from_a_real_script_host(pool):
    allowed = set(allowlist.allowed("x86_64").values())
    numbers = sorted((set(_table().values()) | set(range(HIGHEST + 1))) - allowed - set(KERNEL_EXEMPT.values()))
    # a few hundred calls per record, so each record's answer stays small
    batches = [numbers[i : i + 128] for i in range(0, len(numbers), 128)]
    getpid = allowlist.PLAIN["x86_64"]["getpid"]
    got = _run(pool, CALLER, [{"numbers": b} for b in batches] + [{"numbers": [getpid]}])
    by_number = {v: k for k, v in _table().items()}
    wrong = {}
    for kind, payload in got[:-1]:
        assert kind == OK, payload
        for nr, (rc, err) in json.loads(payload).items():
            if rc != -1 or err != errno.EPERM:
                wrong[by_number.get(int(nr), nr)] = (rc, errno.errorcode.get(err, err))
    assert wrong == {}
    assert len(numbers) == HIGHEST + 1 - len(allowed) - len(KERNEL_EXEMPT)
    # the host survived all of it and still serves records
    assert got[-1][0] == OK and json.loads(got[-1][1])[str(getpid)][0] > 1


@pytest.mark.parametrize("name", sorted(KERNEL_EXEMPT))
def test_calls_the_kernel_exempts_from_seccomp_fail_their_record_alone(pool, name):
    records = [{"numbers": [KERNEL_EXEMPT[name]]}, {"numbers": [allowlist.PLAIN["x86_64"]["getpid"]]}]
    (kind, payload), after = _run(pool, CALLER, records)
    if kind == OK:  # refused or failed: never did anything
        [(rc, _err)] = json.loads(payload).values()
        assert rc == -1, payload
    else:
        assert kind == CRASHED and b"SIGILL" in payload, payload
    assert after[0] == OK


@pytest.mark.parametrize(
    ("name", "args", "why"),
    [
        ("clone", [0], "a process, not a thread"),
        ("clone", [0x00010000 | 0x00000100 | 0x00000800 | 0x10000000], "a thread in a new user namespace"),
        ("kill", ["PPID", 0], "a signal to its worker"),
        ("tgkill", ["PPID", "PPID", 0], "a signal to its worker's thread"),
        ("ioctl", [0, 0x5412], "TIOCSTI (push input into a terminal)"),
        # review of #23: write leases on library files stalled every Python process on the host
        ("fcntl", [0, 1024, 1], "F_SETLEASE (a lease other processes' opens wait 45 s on)"),
        ("fcntl", [0, 1026, 0x80000001], "F_NOTIFY (dnotify: a file watch)"),
        ("fcntl", [0, 8, "PPID"], "F_SETOWN (SIGIO to another process)"),
        ("fcntl", [0, 10, 9], "F_SETSIG"),
    ],
)
def test_calls_allowed_only_with_certain_arguments_refuse_the_others(pool, name, args, why):
    nr = allowlist.CHECKED["x86_64"][name]
    [(kind, payload)] = _run(pool, CALLER, [{"call": [nr, args]}])
    assert kind == OK, payload
    assert json.loads(payload) == [-1, errno.EPERM], why


def test_clone3_answers_enosys_so_the_c_library_falls_back_to_clone(pool):
    [(kind, payload)] = _run(pool, CALLER, [{"call": [allowlist.CHECKED["x86_64"]["clone3"], [0, 0]]}])
    assert (kind, json.loads(payload)) == (OK, [-1, errno.ENOSYS])


# ------------------------------------------------------------------ the review's attacks
ATTACKS = r"""
import ctypes, os, signal, socket

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def raw(nr, *args):
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


def process(record):
    a, target = record["attack"], record.get("target", "")
    ppid = os.getppid()
    if a == "chmod":
        os.chmod(target, 0o644)
    elif a == "chmod_dir":
        os.chmod(os.path.dirname(target), 0o777)
    elif a == "fchmod":
        fd = os.open(os.path.join(os.environ["TMPDIR"], "mine"), os.O_CREAT | os.O_WRONLY, 0o600)
        os.fchmod(fd, 0o4777)
    elif a == "chown":
        os.chown(target, 65534, 65534)
    elif a == "utime":
        os.utime(target, (0, 0))
    elif a == "setxattr":
        os.setxattr(target, "user.rqp", b"x")
    elif a == "getxattr":
        os.listxattr(target)
    elif a == "setpriority":
        os.setpriority(os.PRIO_PROCESS, ppid, 19)
    elif a == "setpriority_self":
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    elif a == "sched_setaffinity":
        os.sched_setaffinity(ppid, {0})
    elif a == "sched_setscheduler":
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    elif a == "socketpair":
        socket.socketpair()
    elif a == "socket_unix":
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    elif a == "shmget":
        raw(29, 0, 4096, 0o1000 | 0o666)  # IPC_PRIVATE, IPC_CREAT
    elif a == "msgget":
        raw(68, 0, 0o1000 | 0o666)
    elif a == "semget":
        raw(64, 0, 1, 0o1000 | 0o666)
    elif a == "inotify_init":
        raw(294, 0)  # inotify_init1
    elif a == "fanotify_init":
        raw(300, 0, 0)
    elif a == "unshare":
        raw(272, 0x10000000)  # unshare(CLONE_NEWUSER)
    elif a == "mount":
        raw(165, 0, 0, 0, 0, 0)
    elif a == "keyctl":
        raw(250, 0, 0, 0, 0, 0)
    elif a == "bpf":
        raw(321, 0, 0, 0)
    elif a == "perf_event_open":
        raw(298, 0, 0, -1, -1, 0)
    elif a == "userfaultfd":
        raw(323, 0)
    elif a == "io_uring_setup":
        raw(425, 1, 0)
    elif a == "ptrace":
        raw(101, 16, ppid, 0, 0)  # PTRACE_ATTACH
    elif a == "process_vm_readv":
        raw(310, ppid, 0, 0, 0, 0, 0)
    elif a == "kill":
        os.kill(ppid, signal.SIGSTOP)
    elif a == "fork":
        os.fork()
    else:
        return "unknown attack"
    return "it worked"
"""

FAMILIES = [
    "chmod",
    "chmod_dir",
    "fchmod",
    "chown",
    "utime",
    "setxattr",
    "getxattr",
    "setpriority",
    "setpriority_self",
    "sched_setaffinity",
    "sched_setscheduler",
    "socketpair",
    "socket_unix",
    "shmget",
    "msgget",
    "semget",
    "inotify_init",
    "fanotify_init",
    "unshare",
    "mount",
    "keyctl",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "ptrace",
    "process_vm_readv",
    "kill",
    "fork",
]


def _sysv_objects() -> list[str]:
    out = []
    for kind in ("shm", "msg", "sem"):
        try:
            out += Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        except OSError:
            pass
    return out


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A role's secret outside the sandbox: 0600 in a 0700 directory, as ``keys/kek.pem``."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    kek = keys / "kek.pem"
    kek.write_text("-----BEGIN PRIVATE KEY-----\n")
    kek.chmod(0o600)
    return kek


@pytest.mark.parametrize("attack", FAMILIES)
def test_each_attack_of_the_review_fails_and_changes_nothing(pool, secret, attack):
    before = os.stat(secret)
    keys_mode = stat.S_IMODE(os.stat(secret.parent).st_mode)
    nice, affinity, sysv = os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0), _sysv_objects()
    [(kind, payload)] = _run(pool, ATTACKS, [{"attack": attack, "target": str(secret)}])
    message = payload.decode()
    assert kind == RAISED, message
    assert "PermissionError" in message or "[Errno 1]" in message, message
    after = os.stat(secret)
    assert stat.S_IMODE(after.st_mode) == 0o600 and stat.S_IMODE(os.stat(secret.parent).st_mode) == keys_mode
    assert (after.st_uid, after.st_gid, after.st_mtime_ns) == (before.st_uid, before.st_gid, before.st_mtime_ns)
    assert os.listxattr(secret) == []
    # the worker (this process is the host's parent here) keeps its priority and CPUs
    assert os.getpriority(os.PRIO_PROCESS, 0) == nice and os.sched_getaffinity(0) == affinity
    assert _sysv_objects() == sysv
