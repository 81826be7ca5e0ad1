"""The system calls a script host may make: what a computing CPython interpreter needs, nothing else.

Standard library only (imported by the script host before it confines itself). The seccomp
filter built from this list (``_confine``) refuses every other call with ``EPERM``: a denylist
misses whatever nobody thought of (the chmod, xattr, SysV IPC, inotify and scheduler calls a
review used), an allowlist does not. Numbers are the kernel's (``asm/unistd_64.h`` for x86_64,
``asm-generic/unistd.h`` for aarch64); ``tests/security/test_syscall_allowlist.py`` calls every
other number of the kernel's table from a real host and checks that each one fails.

Why each group is here -- and what is deliberately not:

* **I/O on descriptors the host already has** (``read``/``write`` family, ``lseek``, ``close``,
  ``dup*``, ``fcntl`` with the commands of ``FCNTLS`` only, ``poll``/``select``/``epoll``, ``pipe2``, ``eventfd2``, ``sendfile``,
  ``copy_file_range``): they act only on open descriptors: the two protocol pipes, files
  Landlock let it open, its own pipes.
* **Paths, which Landlock confines** (``openat``, the ``stat`` family, ``readlink``,
  ``getdents``, ``access``, ``getcwd``/``chdir``, and in its scratch directory ``mkdir``,
  ``unlink``, ``rename``, ``truncate``, ``fsync``): reading is limited to library paths, writing
  to the host's scratch directory. Not here: the chmod, chown, utime and xattr families (Landlock
  does not govern metadata), ``link``/``symlink``, ``mknod``, ``statfs``, ``name_to_handle_at``.
* **Memory** (``mmap`` family, ``brk``, ``madvise``): bounded by ``RLIMIT_AS``. Not here:
  ``memfd_create`` (its pages are not counted by ``RLIMIT_AS``: a script held 1 GiB that way under
  a 256 MiB limit), ``mlock``, ``mbind``, ``userfaultfd``, ``process_vm_*``, ``shm*``.
* **Threads** (``clone`` with ``CLONE_THREAD`` and no namespace flag only, ``futex``,
  ``set_robust_list``, ``rseq``, ``set_tid_address``, ``sched_yield``, ``sched_getaffinity``):
  native libraries start threads; ``clone3`` answers ``ENOSYS`` so the C library falls back to
  ``clone``, whose flags the filter can read. Not here: fork/vfork/exec, ``sched_set*``,
  ``setpriority``, ``unshare``/``setns``.
* **Identity and time, read only** (``getpid`` ... ``getresgid``, ``uname``, ``sysinfo``,
  ``getrusage``, ``getrlimit``/``prlimit64`` without a new limit, ``clock_gettime``,
  ``nanosleep``, ``getrandom``, interval timers on itself). Not here: any setter.
* **Signals to itself** (``rt_sig*``, ``sigaltstack``, ``kill``/``tgkill`` of its own pid only),
  and ``exit``/``exit_group``. Not here: ``tkill``, ``rt_*sigqueueinfo``, ``pidfd_*``.
* **ioctl** only for the few requests CPython makes on its own descriptors (``isatty``'s
  ``TCGETS``, ``FIOCLEX``/``FIONCLEX``, ``FIONBIO``, ``FIONREAD``, ``TIOCGWINSZ``).

Everything else -- sockets of every kind and ``socketpair``, SysV IPC, inotify and fanotify,
mount and namespace calls, keyrings, ``bpf``, ``perf_event_open``, ``io_uring``, ``ptrace`` --
is refused because it is not listed.
"""

from __future__ import annotations

#: allowed without looking at the arguments, x86_64 numbers (hot ones first: the kernel caches
#: argument-free verdicts, so the order only matters for the first call of each)
PLAIN = {
    "x86_64": {
        # I/O on open descriptors
        "read": 0,
        "write": 1,
        "readv": 19,
        "writev": 20,
        "pread64": 17,
        "pwrite64": 18,
        "preadv": 295,
        "pwritev": 296,
        "preadv2": 327,
        "pwritev2": 328,
        "lseek": 8,
        "close": 3,
        "close_range": 436,
        "dup": 32,
        "dup2": 33,
        "dup3": 292,
        "poll": 7,
        "ppoll": 271,
        "select": 23,
        "pselect6": 270,
        "epoll_create1": 291,
        "epoll_ctl": 233,
        "epoll_wait": 232,
        "epoll_pwait": 281,
        "pipe": 22,
        "pipe2": 293,
        "eventfd2": 290,
        "sendfile": 40,
        "copy_file_range": 326,
        "fadvise64": 221,
        # paths (Landlock decides which)
        "open": 2,
        "openat": 257,
        "fstat": 5,
        "stat": 4,
        "lstat": 6,
        "newfstatat": 262,
        "statx": 332,
        "readlink": 89,
        "readlinkat": 267,
        "getdents": 78,
        "getdents64": 217,
        "access": 21,
        "faccessat": 269,
        "faccessat2": 439,
        "getcwd": 79,
        "chdir": 80,
        "fchdir": 81,
        "mkdir": 83,
        "mkdirat": 258,
        "unlink": 87,
        "unlinkat": 263,
        "rmdir": 84,
        "rename": 82,
        "renameat": 264,
        "renameat2": 316,
        "truncate": 76,
        "ftruncate": 77,
        "fsync": 74,
        "fdatasync": 75,
        "umask": 95,
        # memory
        "mmap": 9,
        "munmap": 11,
        "mprotect": 10,
        "mremap": 25,
        "madvise": 28,
        "brk": 12,
        "msync": 26,
        "mincore": 27,
        # threads
        "futex": 202,
        "set_robust_list": 273,
        "rseq": 334,
        "set_tid_address": 218,
        "arch_prctl": 158,
        "sched_yield": 24,
        "sched_getaffinity": 204,
        # identity, limits and time (read only)
        "getpid": 39,
        "gettid": 186,
        "getppid": 110,
        "getuid": 102,
        "geteuid": 107,
        "getgid": 104,
        "getegid": 108,
        "getgroups": 115,
        "getresuid": 118,
        "getresgid": 120,
        "getpgrp": 111,
        "uname": 63,
        "sysinfo": 99,
        "getrusage": 98,
        "times": 100,
        "getrlimit": 97,
        "getcpu": 309,
        "clock_gettime": 228,
        "clock_getres": 229,
        "clock_nanosleep": 230,
        "nanosleep": 35,
        "gettimeofday": 96,
        "time": 201,
        "getitimer": 36,
        "setitimer": 38,
        "alarm": 37,
        "getrandom": 318,
        # signals (delivered to itself) and the end
        "rt_sigaction": 13,
        "rt_sigprocmask": 14,
        "rt_sigreturn": 15,
        "rt_sigpending": 127,
        "rt_sigsuspend": 130,
        "rt_sigtimedwait": 128,
        "sigaltstack": 131,
        "pause": 34,
        "restart_syscall": 219,
        "exit": 60,
        "exit_group": 231,
    },
    "aarch64": {
        "read": 63,
        "write": 64,
        "readv": 65,
        "writev": 66,
        "pread64": 67,
        "pwrite64": 68,
        "preadv": 69,
        "pwritev": 70,
        "preadv2": 286,
        "pwritev2": 287,
        "lseek": 62,
        "close": 57,
        "close_range": 436,
        "dup": 23,
        "dup3": 24,
        "ppoll": 73,
        "pselect6": 72,
        "epoll_create1": 20,
        "epoll_ctl": 21,
        "epoll_pwait": 22,
        "pipe2": 59,
        "eventfd2": 19,
        "sendfile": 71,
        "copy_file_range": 285,
        "fadvise64": 223,
        "openat": 56,
        "fstat": 80,
        "newfstatat": 79,
        "statx": 291,
        "readlinkat": 78,
        "getdents64": 61,
        "faccessat": 48,
        "faccessat2": 439,
        "getcwd": 17,
        "chdir": 49,
        "fchdir": 50,
        "mkdirat": 34,
        "unlinkat": 35,
        "renameat": 38,
        "renameat2": 276,
        "truncate": 45,
        "ftruncate": 46,
        "fsync": 82,
        "fdatasync": 83,
        "umask": 166,
        "mmap": 222,
        "munmap": 215,
        "mprotect": 226,
        "mremap": 216,
        "madvise": 233,
        "brk": 214,
        "msync": 227,
        "mincore": 232,
        "futex": 98,
        "set_robust_list": 99,
        "rseq": 293,
        "set_tid_address": 96,
        "sched_yield": 124,
        "sched_getaffinity": 123,
        "getpid": 172,
        "gettid": 178,
        "getppid": 173,
        "getuid": 174,
        "geteuid": 175,
        "getgid": 176,
        "getegid": 177,
        "getgroups": 158,
        "getresuid": 148,
        "getresgid": 150,
        "uname": 160,
        "sysinfo": 179,
        "getrusage": 165,
        "times": 153,
        "getrlimit": 163,
        "getcpu": 168,
        "clock_gettime": 113,
        "clock_getres": 114,
        "clock_nanosleep": 115,
        "nanosleep": 101,
        "gettimeofday": 169,
        "getitimer": 102,
        "setitimer": 103,
        "getrandom": 278,
        "rt_sigaction": 134,
        "rt_sigprocmask": 135,
        "rt_sigreturn": 139,
        "rt_sigpending": 136,
        "rt_sigsuspend": 133,
        "rt_sigtimedwait": 137,
        "sigaltstack": 132,
        "restart_syscall": 128,
        "exit": 93,
        "exit_group": 94,
    },
}

#: allowed only with certain arguments (``_confine`` checks them): clone (threads, no namespace
#: flags), clone3 (ENOSYS), prlimit64 (read only), kill and tgkill (itself), ioctl (``IOCTLS``),
#: fcntl (``FCNTLS``)
CHECKED = {
    "x86_64": {"clone": 56, "clone3": 435, "prlimit64": 302, "kill": 62, "tgkill": 234, "ioctl": 16, "fcntl": 72},
    "aarch64": {"clone": 220, "clone3": 435, "prlimit64": 261, "kill": 129, "tgkill": 131, "ioctl": 29, "fcntl": 25},
}

#: the ioctl requests CPython makes on its own descriptors (the same numbers on both architectures)
IOCTLS = {
    "TCGETS": 0x5401,  # isatty(), which open() asks of every file
    "TIOCGWINSZ": 0x5413,  # shutil.get_terminal_size()
    "FIONREAD": 0x541B,
    "FIONBIO": 0x5421,
    "FIONCLEX": 0x5450,  # os.set_inheritable()
    "FIOCLEX": 0x5451,
}


#: the fcntl commands a computing interpreter uses on its own descriptors: duplicating, the
#: close-on-exec and status flags, record locks (sqlite in scratch). Not: leases (F_SETLEASE let a
#: script stall every process that opens a file it can read), dnotify (F_NOTIFY, a file watch),
#: F_SETOWN/F_SETSIG (signals to others), pipe sizes, seals.
FCNTLS = {
    "F_DUPFD": 0,
    "F_GETFD": 1,
    "F_SETFD": 2,
    "F_GETFL": 3,
    "F_SETFL": 4,
    "F_GETLK": 5,
    "F_SETLK": 6,
    "F_SETLKW": 7,
    "F_OFD_GETLK": 36,
    "F_OFD_SETLK": 37,
    "F_OFD_SETLKW": 38,
    "F_DUPFD_CLOEXEC": 1030,
}


def allowed(arch: str) -> dict[str, int]:
    """Every name the filter lets through in some form, with its number (for tests and reports)."""
    return {**PLAIN[arch], **CHECKED[arch]}
