"""The role's side of a script host: start it, feed it, watch it, replace it.

A ``ScriptHost`` is one confined interpreter for one workload. The role talks to it through
non-blocking pipes and a selector, so a host that stops reading or writing never blocks the
role, and it reads the shared "record in hand" page to know which record a host that hangs or
dies was working on. Everything the host sends is checked as untrusted input.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import selectors
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DEFAULT_MAX_RESULT_BYTES
from ..errors import RqpError, ScriptError
from . import _identity, _runner, _scratch
from . import _protocol as P

__all__ = [
    "HostFailure",
    "InProcessHost",
    "Protections",
    "ResultSink",
    "SandboxConfig",
    "SandboxError",
    "ScriptHost",
]

#: where a host hands the outcomes of a batch as they arrive: ``sink(start, kinds, values)``, the
#: batch's records ``start``, ``start + 1``, ... in order (one call per RESULTS frame)
ResultSink = Callable[[int, bytes, list[bytes]], None]

HOST_SCRIPT = Path(__file__).with_name("_host.py")
#: how long a fresh host may take to start and confine itself
START_TIMEOUT = 30.0
#: how often a waiting role looks at the record-in-hand page
WATCH_INTERVAL = 1.0
MAX_FRAME = 256 << 20
#: the size asked for the pipes to a host (Linux's default pipe-max-size)
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031
_READ_SIZE = 1 << 20


class SandboxError(RqpError):
    """The sandbox cannot run scripts here (the host does not start, or protections are missing)."""

    exit_code = 2


@dataclass(frozen=True)
class SandboxConfig:
    """What a script host gets: its limits, what it may read, and what must stay out of reach."""

    #: run scripts in confined processes (False: inside the role, for benchmarks and trusted code)
    enabled: bool = True
    #: refuse to run any script unless every protection in ``_confine.REQUIRED`` is active
    require: bool = False
    record_timeout: float = 300.0
    memory_mb: int = 4096
    cpu_seconds: int = 3600
    open_files: int = 256
    file_mb: int = 1024
    #: extra read-only paths (reference data, models)
    read_paths: tuple[str, ...] = ()
    #: secrets that must not be readable from the host (checked after confinement)
    forbidden: tuple[str, ...] = ()
    tmp_root: str | None = None
    #: exception type names that fail a record at once (``RQP_PERMANENT_ERRORS``)
    permanent_errors: tuple[str, ...] = ()
    #: the largest result one record may return (``RQP_MAX_RESULT_BYTES``); the host refuses a
    #: larger one and the role never buffers a frame past ``P.results_frame_limit`` of it
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    #: (uid, gid) hosts run as where the role can switch to it (``_identity``); None: the role's
    sandbox_ids: tuple[int, int] | None = (_identity.DEFAULT_SANDBOX_UID, _identity.DEFAULT_SANDBOX_GID)
    #: the interpreter hosts run (default: the role's own); the same Python version, reachable
    #: by the sandbox uid (the role's may sit in a directory only its owner can search)
    python: str = ""

    @classmethod
    def from_settings(cls, settings: Any) -> SandboxConfig:
        ids: tuple[int, int] | None = (_identity.DEFAULT_SANDBOX_UID, _identity.DEFAULT_SANDBOX_GID)
        wanted = getattr(settings, "sandbox_uid", None)  # RQP_SANDBOX_UID, where the settings have it
        if wanted is not None:
            try:
                ids = _identity.parse_uid(str(wanted))
            except ValueError as exc:
                raise SandboxError(str(exc)) from None
        forbidden = [
            str(p)
            for p in (
                settings.kek_file,
                settings.redis_password_file,
                settings.trusted_signers_file,
                settings.signing_key_file,
                settings.redis_ca_file,
            )
            if p
        ]
        return cls(
            enabled=settings.sandbox,
            require=settings.require_sandbox,
            record_timeout=settings.record_timeout,
            memory_mb=settings.script_memory_mb,
            cpu_seconds=settings.script_cpu_seconds,
            read_paths=tuple(p for p in settings.sandbox_read_paths.split(":") if p),
            permanent_errors=tuple(n.strip() for n in settings.permanent_errors.split(",") if n.strip()),
            max_result_bytes=getattr(settings, "max_result_bytes", DEFAULT_MAX_RESULT_BYTES),
            forbidden=tuple(forbidden),
            sandbox_ids=ids,
        )

    def host_config(self, tmpdir: str) -> dict[str, Any]:
        return {
            "memory_bytes": self.memory_mb << 20,
            "cpu_seconds": self.cpu_seconds,
            "open_files": self.open_files,
            "file_bytes": self.file_mb << 20,
            "tmpdir": tmpdir,
            "read_paths": list(self.read_paths),
            "devices": ["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"],
            "forbidden": list(self.forbidden),
            "permanent_errors": list(self.permanent_errors),
            "max_result_bytes": self.max_result_bytes,
            "role_uid": os.geteuid(),
        }


@dataclass(frozen=True)
class Protections:
    """What a script host reported it could apply to itself."""

    report: dict[str, Any] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        out = list(self.report.get("missing", ()))
        if self.report.get("exposed"):
            out.append("secrets readable: " + ", ".join(self.report["exposed"]))
        return out

    def describe(self) -> str:
        """One line for the log: what is active, then what is not."""
        r = self.report
        if r.get("in_process"):
            return "OFF (RQP_SANDBOX=false): the workload's script runs inside this process, next to its keys"
        on = ["separate process (no keys, no credentials, minimal environment)"]
        if r.get("landlock_fs"):
            extra = [
                x for x, k in (("tcp", "landlock_net"), ("signals, abstract sockets", "landlock_scopes")) if r.get(k)
            ]
            on.append(f"landlock ABI {r['landlock_abi']} (files{', ' + ', '.join(extra) if extra else ''})")
        if r.get("seccomp"):
            on.append(f"seccomp allowlist ({r.get('seccomp_allowed', '?')} calls; no sockets, fork, exec, chmod, IPC)")
        if r.get("sandbox_uid") is not None:
            on.append(f"own uid {r['sandbox_uid']}")
        elif "uid" in r:
            on.append(
                f"same uid as the role ({r.get('sandbox_uid_problem') or 'no other uid'}; the allowlist alone holds)"
            )
        if r.get("no_capabilities"):
            on.append("no capabilities")
        if r.get("denials"):
            on.append("refusals tried (" + ", ".join(r.get("denials_tried", ())) + ")")
        if r.get("rlimits"):
            lim = r.get("limits", {})
            on.append("rlimits (" + ", ".join(f"{k} {v}" for k, v in lim.items()) + ", core 0)" if lim else "rlimits")
        if r.get("no_new_privs"):
            on.append("no_new_privs")
        text = "sandbox: " + ", ".join(on)
        problems = [r[k] for k in ("landlock_problem", "seccomp_problem") if r.get(k)] + list(
            r.get("rlimit_problems", ())
        )
        if self.missing:
            text += "; MISSING: " + ", ".join(self.missing) + (f" ({'; '.join(problems)})" if problems else "")
        return text

    def short(self) -> str:
        """A few words: which layers are on, or what is missing."""
        r = self.report
        if r.get("in_process"):
            return "OFF (scripts run inside the role)"
        on = ["own process"] + [
            name
            for name, key in (
                (f"landlock ABI {r.get('landlock_abi')}", "landlock_fs"),
                ("seccomp allowlist", "seccomp"),
                (f"uid {r.get('sandbox_uid')}", "sandbox_uid"),
                ("refusals tried", "denials"),
                ("rlimits", "rlimits"),
                ("no_new_privs", "no_new_privs"),
            )
            if r.get(key)
        ]
        return " + ".join(on) + (f"; MISSING: {', '.join(self.missing)}" if self.missing else "")

    def check(self, required: bool, role: str) -> None:
        if required and self.missing:
            raise SandboxError(
                f"{role}: the script sandbox is incomplete on this host (missing: {', '.join(self.missing)}); "
                f"RQP_REQUIRE_SANDBOX=true refuses to run scripts without it -- use a kernel with Landlock and seccomp, "
                f"or set RQP_REQUIRE_SANDBOX=false to accept the risk"
            )


class HostFailure(Exception):
    """A host stopped mid-batch: ``delivered`` outcomes went to the sink before (the batch's
    first records), ``index`` is the record it had in hand, ``kind``/``message`` what happened
    to that record."""

    def __init__(self, delivered: int, index: int | None, kind: int, message: str) -> None:
        super().__init__(message)
        self.delivered = delivered
        self.index = index
        self.kind = kind
        self.message = message


_SIGNAL_REASONS = {
    signal.SIGKILL: "was killed (SIGKILL: out of memory, or killed from outside)",
    signal.SIGSEGV: "crashed with SIGSEGV (a fault in native code)",
    signal.SIGBUS: "crashed with SIGBUS (a fault in native code)",
    signal.SIGABRT: "aborted (SIGABRT)",
    signal.SIGXCPU: "used up its CPU time limit (RQP_SCRIPT_CPU_SECONDS)",
    signal.SIGSYS: "made a system call the sandbox forbids (SIGSYS)",
    signal.SIGFPE: "crashed with SIGFPE (an arithmetic fault in native code)",
}


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            sig = signal.Signals(-code)
        except ValueError:
            return f"was killed by signal {-code}"
        return _SIGNAL_REASONS.get(sig, f"was killed by {sig.name}")
    return f"exited with status {code} (os._exit(), or a fatal error in native code)"


_RESULT_KINDS = frozenset((P.OK, P.RAISED, P.MALFORMED, P.NOT_JSON, P.PERMANENT, P.TOO_LARGE))
_RECORD_KINDS = frozenset((P.OK, P.NOT_JSON))


def _valid(payload: bytes, columns: tuple[bytes, list[bytes]], allowed: frozenset[int]) -> bool:
    """Known kinds, and every OK value one non-empty line of JSON text (the results file holds a
    value per line: a line break would let a script write lines for other records). The common
    case -- all OK, no line break anywhere -- is checked on the whole payload at C speed."""
    kinds, values = columns
    if kinds.count(P.OK) == len(kinds):
        at = getattr(columns, "values_at", 0)
        return not getattr(columns, "empty_value", True) and payload.find(b"\n", at) < 0
    return all(k in allowed and (k != P.OK or (v and b"\n" not in v)) for k, v in zip(kinds, values, strict=True))


def _fmt_seconds(s: float) -> str:
    return f"{s:g}"


class ScriptHost:
    """One confined interpreter that serves one workload and is never reused for another."""

    def __init__(self, config: SandboxConfig, workload_id: str = "") -> None:
        self.config = config
        #: set when the host is given a workload (a spare has none yet)
        self.workload_id = workload_id
        self.proc: subprocess.Popen[bytes] | None = None
        self.protections = Protections()
        self.tmpdir = ""
        self.identity = _identity.Identity(None, None, "not started")
        self.loaded: dict[str, Any] = {}
        self.last_used = time.monotonic()
        self._page: mmap.mmap | None = None
        self._buf = P.FrameBuffer()
        self._sel: selectors.BaseSelector | None = None
        self._batch_size = 0
        self._ready = False
        #: the largest frame this host may send outside parse() (results, answers)
        self._frame_limit = P.results_frame_limit(config.max_result_bytes)

    # ------------------------------------------------------------------------ lifecycle
    def start(self) -> Protections:
        self.spawn()
        return self.ready()

    def spawn(self) -> None:
        """Start the interpreter and hand it its configuration; it confines itself while the
        role does something else (``ready`` collects the result)."""
        self.tmpdir = _scratch.make(self.config.tmp_root)
        python = self.config.python or sys.executable
        # what the host must reach: its interpreter (and the libraries of the role's own), rqp's
        # host module, its scratch directory
        prefixes = [] if self.config.python else [sys.base_prefix, sys.prefix]
        self.identity = _identity.plan(
            self.config.sandbox_ids, [python, *prefixes, str(HOST_SCRIPT), os.path.dirname(self.tmpdir)]
        )
        if self.identity.uid is not None:
            uid, gid = self.identity.uid, self.identity.gid if self.identity.gid is not None else self.identity.uid
            try:  # the scratch directory becomes the host's; nothing else of the role's does
                os.chown(self.tmpdir, uid, gid)
            except PermissionError:
                # no CAP_CHOWN (the images): the host's uid makes its own, the role's goes
                try:
                    made = _scratch.make_as(self.config.tmp_root, uid, gid)
                except OSError as exc:
                    self.identity = _identity.Identity(
                        None, None, f"cannot give the scratch directory to uid {uid} ({exc.strerror})"
                    )
                else:
                    _scratch.remove(self.tmpdir)
                    self.tmpdir = made
            except OSError as exc:
                self.identity = _identity.Identity(
                    None, None, f"cannot give the scratch directory to uid {uid} ({exc.strerror})"
                )
        ids: dict[str, Any] = (
            {"user": self.identity.uid, "group": self.identity.gid, "extra_groups": []}
            if self.identity.uid is not None
            else {}
        )
        memfd = os.memfd_create("rqp-in-hand", os.MFD_CLOEXEC)
        try:
            os.ftruncate(memfd, mmap.PAGESIZE)
            self._page = mmap.mmap(memfd, mmap.PAGESIZE)
            # pass_fds keeps the descriptor's number in the child: the host is told which it is
            self.proc = subprocess.Popen(
                [python, "-I", "-B", str(HOST_SCRIPT), str(memfd)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=self._env(),
                cwd="/",  # the host enters its scratch itself (the role may not search it)
                close_fds=True,
                start_new_session=True,
                pass_fds=(memfd,),
                bufsize=0,
                **ids,
            )
        except OSError as exc:
            self.close()
            raise SandboxError(
                f"cannot start a script process ({exc.strerror or exc}); check the host's process and memory limits"
            ) from None
        finally:
            os.close(memfd)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        for f in (self.proc.stdin, self.proc.stdout):
            os.set_blocking(f.fileno(), False)
            try:  # a chunk's batch crosses in a few writes, not one context switch per 64 KiB
                fcntl.fcntl(f.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass  # the system's pipe-max-size is lower: the default size works, only slower
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            self._send(
                P.frame(P.CONFIG, json.dumps(self.config.host_config(self.tmpdir)).encode()), START_TIMEOUT, "start"
            )
        except ScriptError as exc:
            self.close()
            raise SandboxError(f"the script sandbox failed to start: {exc}") from None

    def ready(self) -> Protections:
        """Wait for the host's report of what it could apply to itself (once: later calls return
        the same report)."""
        if self._ready:
            return self.protections
        try:
            kind, payload = self._expect(START_TIMEOUT, "start")
        except ScriptError as exc:
            self.close()
            raise SandboxError(f"the script sandbox failed to start: {exc}") from None
        if kind != P.READY:
            self.close()
            raise SandboxError(f"the script sandbox failed to start: {payload.decode(errors='replace')}")
        try:
            report = dict(json.loads(payload))
        except (ValueError, TypeError):
            self.close()
            raise SandboxError("the script sandbox failed to start: its report is not JSON") from None
        report["sandbox_uid"] = self.identity.uid
        report["sandbox_uid_problem"] = self.identity.reason
        if self.identity.uid is not None and report.get("uid") != self.identity.uid:
            report.setdefault("missing", []).append(
                f"own uid (asked for {self.identity.uid}, runs as {report.get('uid')})"
            )
        report["limits"] = {
            "memory": f"{self.config.memory_mb} MiB",
            "cpu": f"{self.config.cpu_seconds} s",
            "open files": self.config.open_files,
            "file size": f"{self.config.file_mb} MiB",
        }
        self.protections = Protections(report)
        self._ready = True
        return self.protections

    def _env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": self.tmpdir,
            "TMPDIR": self.tmpdir,
            # parallelism comes from workers: native libraries get one thread each
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "NUMEXPR_NUM_THREADS": "1",
        }

    def load(self, source: bytes) -> dict[str, Any]:
        """Send the script; the host imports it and calls ``setup()``. ``ScriptError`` if that fails."""
        wid = self.workload_id.encode()
        self._send(P.frame(P.SCRIPT, struct.pack(">H", len(wid)) + wid + source), self.config.record_timeout, "load")
        kind, payload = self._expect(self.config.record_timeout, "load")
        if kind == P.ERROR:
            raise ScriptError(payload.decode(errors="replace"))
        if kind != P.LOADED:
            raise ScriptError(f"the script host of workload {self.workload_id} answered {kind} to its script")
        try:
            self.loaded = dict(json.loads(payload))
        except (ValueError, TypeError):
            self.loaded = {}
        return self.loaded

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """CPU time the host has used (user + system), from /proc; 0 when unknown."""
        if self.proc is None:
            return 0.0
        try:
            with open(f"/proc/{self.proc.pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def close(self) -> None:
        """End the host and remove its temporary directory. SIGKILL: a host keeps nothing worth
        a graceful exit, and the role does not wait for an interpreter's teardown."""
        proc = self.proc
        if proc is not None:
            self._kill()
            if self._sel is not None:
                self._sel.close()
                self._sel = None
            for f in (proc.stdin, proc.stdout):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass
            self.proc = None
        if self._page is not None:
            self._page.close()
            self._page = None
        if self.tmpdir:
            _scratch.remove(self.tmpdir)
            self.tmpdir = ""

    def _kill(self) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except PermissionError:
                # a host under its own uid, and no CAP_KILL (the images): signalled as its uid
                uid, gid = self.identity.uid, self.identity.gid
                if uid is None or not _identity.kill_as(uid, gid if gid is not None else uid, proc.pid, signal.SIGKILL):
                    proc.kill()
            except ProcessLookupError:
                proc.kill()
        try:
            return proc.wait(5)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> ScriptHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------ plumbing
    def _in_hand(self) -> int:
        assert self._page is not None
        return P.IN_HAND.unpack_from(self._page, 0)[0]

    def _died(self, what: str) -> str:
        code = self.proc.poll() if self.proc else None
        if code is None:
            code = self._kill()
        return f"the script process of workload {self.workload_id} {_exit_reason(code)} during {what}"

    def _send(self, data: bytes, timeout: float, what: str) -> None:
        """Write all of ``data``, reading nothing (used before the host has anything to say)."""
        assert self.proc is not None and self.proc.stdin is not None
        view = memoryview(data)
        fd = self.proc.stdin.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_WRITE)
            while view:
                try:
                    n = os.write(fd, view[: 1 << 20])
                    view = view[n:]
                    continue
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    raise ScriptError(self._died(what)) from None
                left = deadline - time.monotonic()
                if left <= 0 or (not sel.select(min(left, WATCH_INTERVAL)) and time.monotonic() >= deadline):
                    self._kill()
                    raise ScriptError(
                        f"the script process of workload {self.workload_id} stopped reading during {what} ({_fmt_seconds(timeout)} s)"
                    )

    def _read_some(self) -> bool:
        """Read what is there; False at end of file."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            data = os.read(self.proc.stdout.fileno(), _READ_SIZE)
        except BlockingIOError:
            return True
        if not data:
            return False
        self._buf.feed(data)
        return True

    def _expect(self, timeout: float, what: str) -> tuple[int, bytes]:
        """The next frame, or ``ScriptError`` when the host dies or says nothing for ``timeout``."""
        assert self._sel is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames = self._buf.frames(self._frame_limit)
            except ValueError:
                self._kill()
                raise ScriptError(
                    f"the script process of workload {self.workload_id} broke rqp's protocol during {what}"
                ) from None
            if frames:
                if len(frames) > 1:  # push back what is not ours yet
                    rest = b"".join(P.frame(k, p) for k, p in frames[1:])
                    self._buf = P.FrameBuffer()
                    self._buf.feed(rest)
                return frames[0]
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill()
                raise ScriptError(
                    f"the script process of workload {self.workload_id} did not answer within {_fmt_seconds(timeout)} s during {what}"
                )
            if self._sel.select(min(left, WATCH_INTERVAL)) and not self._read_some():
                raise ScriptError(self._died(what))

    # ------------------------------------------------------------------------ a batch
    def run(self, payloads: list[bytes], sink: ResultSink) -> None:
        """``process()`` on each record; the outcomes go to ``sink`` as they arrive, (kind,
        payload) per record, in order -- none is kept here, so a batch's results need not fit in
        memory at once. Raises ``HostFailure`` when a record times out, its result is announced
        over the limit, or the host dies; the host is gone then."""
        assert self.proc is not None and self.proc.stdin is not None and self._sel is not None
        self.last_used = time.monotonic()
        P.IN_HAND.pack_into(self._page, 0, 0)  # type: ignore[arg-type]  # (a script can scribble on it)
        out = memoryview(P.frame(P.BATCH, P.pack_batch(payloads)))
        wfd = self.proc.stdin.fileno()
        sel = self._sel
        sel.register(wfd, selectors.EVENT_WRITE)
        writing = True
        delivered = 0
        n = self._batch_size = len(payloads)
        timeout = self.config.record_timeout
        limit = self._frame_limit
        watched = 0
        since = time.monotonic()
        try:
            while True:
                if writing:
                    try:
                        k = os.write(wfd, out[: 1 << 20])
                        out = out[k:]
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        raise self._failure(delivered, "died") from None
                    if not out:
                        sel.unregister(wfd)
                        writing = False
                try:
                    frames = self._buf.frames(limit)
                except P.FrameTooLarge as exc:
                    raise self._failure(delivered, "too large", exc.size) from None
                except ValueError:
                    raise self._failure(delivered, "protocol") from None
                for kind, payload in frames:
                    if kind == P.RESULTS:
                        got = self._take_results(payload, delivered, n)
                        if got is None:
                            raise self._failure(delivered, "protocol")
                        del payload
                        sink(delivered, *got)
                        delivered += len(got[0])
                    elif kind == P.BATCH_END:
                        if delivered != n or self._buf.pending:
                            raise self._failure(delivered, "protocol")
                        self.last_used = time.monotonic()
                        return
                    else:
                        raise self._failure(delivered, "protocol")
                del frames
                now = time.monotonic()
                current = self._in_hand()
                if current != watched:
                    watched, since = current, now
                elif now - since > timeout:
                    raise self._failure(delivered, "timeout")
                events = sel.select(min(WATCH_INTERVAL, timeout / 10, max(0.0, since + timeout - now) + 0.01))
                for key, _ in events:
                    if key.fileobj is self.proc.stdout and not self._read_some():
                        raise self._failure(delivered, "died")
        finally:
            if writing and self._sel is not None:
                try:
                    sel.unregister(wfd)
                except (KeyError, ValueError):
                    pass

    def _take_results(self, payload: bytes, delivered: int, n: int) -> tuple[bytes, list[bytes]] | None:
        """A RESULTS frame's (kinds, values); None when it is not what an honest host sends."""
        try:
            (start,) = P.COUNT.unpack_from(payload, 0)
            columns = P.unpack_columns(payload, True, P.COUNT.size)
        except (ValueError, IndexError, struct.error):
            return None
        kinds, values = columns
        if start != delivered or start + len(values) > n or not _valid(payload, columns, _RESULT_KINDS):
            return None
        return kinds, values

    def _failure(self, delivered: int, what: str, size: int = 0) -> HostFailure:
        """Stop the host and say which record it had in hand and what became of it. A hang or
        a death happens in the record in hand (the shared page says which); bytes forged into
        the pipe may have been written during any earlier record, so in a batch of several they
        blame none (``index`` None) and the pool finds the culprit one record at a time. A frame
        announced over the limit is refused unread, the same way, and fails its record
        ``TOO_LARGE``."""
        in_hand = self._in_hand()
        n = self._batch_size
        # the page is the script's to scribble on: trust it only within what is still open
        index: int | None = in_hand - 1 if delivered < in_hand <= n else delivered
        if what == "timeout":
            self._kill()
            kind, message = (
                P.TIMED_OUT,
                f"timed out after {_fmt_seconds(self.config.record_timeout)} s (RQP_RECORD_TIMEOUT); the script process was replaced",
            )
        elif what == "too large":
            self._kill()  # its body stays unread in the pipe, which goes with the host
            # an honest host never sends it (it refuses the result itself): like forged bytes it
            # may come from any open record, so in a batch of several the pool finds which
            index = delivered if n - delivered == 1 else None
            kind, message = (
                P.TOO_LARGE,
                P.too_large(size, self.config.max_result_bytes)
                + " (announced by its script process, which was replaced unread)",
            )
        elif what == "protocol":
            self._kill()
            kind, message = (
                P.CRASHED,
                "the script process broke rqp's result protocol (wrote into rqp's pipe?) while processing this record; it was replaced",
            )
            if n - delivered > 1:
                index = None
        else:
            code = self.proc.poll() if self.proc else None
            if code is None:
                try:
                    code = self.proc.wait(2) if self.proc else None
                except subprocess.TimeoutExpired:
                    code = self._kill()
            kind, message = (
                P.CRASHED,
                f"the script process {_exit_reason(code)} while processing this record; it was replaced",
            )
        if index is not None and index >= n:
            index = None
        self.close()
        return HostFailure(delivered, index, kind, message)

    # ------------------------------------------------------------------------ parse
    def parse(self, chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
        """(kind, payload) per record the script's ``parse()`` yields from ``chunks`` (the
        decrypted data, fed as the host reads it). ``ScriptError`` when parse() raises, the host
        dies, or it makes no progress for ``record_timeout``."""
        assert self.proc is not None and self.proc.stdin is not None and self._sel is not None
        wfd = self.proc.stdin.fileno()
        sel = self._sel
        source = iter(chunks)
        self._send(P.frame(P.PARSE), START_TIMEOUT, "parse")
        out = memoryview(b"")
        fed_all = False
        registered = False
        timeout = self.config.record_timeout
        since = time.monotonic()
        try:
            while True:
                try:
                    frames = self._buf.frames()
                except ValueError:
                    self._kill()
                    raise ScriptError(
                        f"the script process of workload {self.workload_id} broke rqp's protocol during parse()"
                    ) from None
                for kind, payload in frames:
                    since = time.monotonic()
                    if kind == P.RECORDS:
                        yield from self._take_records(payload)
                    elif kind == P.PARSE_END:
                        return
                    elif kind == P.ERROR:
                        raise ScriptError(payload.decode(errors="replace"))
                    else:
                        self._kill()
                        raise ScriptError(
                            f"the script process of workload {self.workload_id} broke rqp's protocol during parse()"
                        )
                if not out and not fed_all:
                    piece = next(source, None)
                    if piece is None:
                        fed_all = True
                        out = memoryview(P.frame(P.DATA_END))
                    else:
                        out = memoryview(P.frame(P.DATA, piece))
                if out:
                    try:
                        k = os.write(wfd, out[: 1 << 20])
                        out = out[k:]
                        since = time.monotonic()
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        out = memoryview(b"")
                        fed_all = True  # the host is gone or stopped reading: its answer says why
                want_write = bool(out)
                if want_write and not registered:
                    sel.register(wfd, selectors.EVENT_WRITE)
                elif registered and not want_write:
                    sel.unregister(wfd)
                registered = want_write
                if time.monotonic() - since > timeout:
                    self._kill()
                    raise ScriptError(
                        f"parse() in the script of workload {self.workload_id} made no progress for {_fmt_seconds(timeout)} s (RQP_RECORD_TIMEOUT)"
                    )
                events = sel.select(min(WATCH_INTERVAL, timeout))
                for key, _ in events:
                    if key.fileobj is self.proc.stdout and not self._read_some():
                        tail = self._buf.frames()
                        for kind, payload in tail:
                            if kind == P.RECORDS:
                                yield from self._take_records(payload)
                            elif kind == P.PARSE_END:
                                return
                            elif kind == P.ERROR:
                                raise ScriptError(payload.decode(errors="replace"))
                        raise ScriptError(self._died("parse()"))
        finally:
            if registered and self._sel is not None:
                try:
                    sel.unregister(wfd)
                except (KeyError, ValueError):
                    pass

    def _take_records(self, payload: bytes) -> Iterator[tuple[int, bytes]]:
        try:
            columns = P.unpack_columns(payload, True)
        except (ValueError, IndexError, struct.error):
            raise self._protocol_error("parse()") from None
        kinds, values = columns
        if not _valid(payload, columns, _RECORD_KINDS):
            raise self._protocol_error("parse()")
        return zip(kinds, values, strict=True)

    def _protocol_error(self, what: str) -> ScriptError:
        self._kill()
        return ScriptError(f"the script process of workload {self.workload_id} broke rqp's protocol during {what}")


class InProcessHost:
    """``RQP_SANDBOX=false``: the same runner inside the role -- no isolation, no timeouts.
    For benchmarks and single-tenant deployments whose scripts are trusted like rqp itself."""

    def __init__(self, config: SandboxConfig, workload_id: str) -> None:
        self.config = config
        self.workload_id = workload_id
        self.protections = Protections({"in_process": True, "missing": ["separate process"]})
        self.script: _runner.LoadedScript | None = None
        self.loaded: dict[str, Any] = {}
        self.last_used = time.monotonic()
        self.alive = True

    def start(self) -> Protections:
        return self.protections

    def load(self, source: bytes) -> dict[str, Any]:
        try:
            self.script = _runner.load(
                source, self.workload_id, frozenset(self.config.permanent_errors), self.config.max_result_bytes
            )
        except _runner.ScriptLoadError as exc:
            raise ScriptError(str(exc)) from None
        self.loaded = {"parse": self.script.parse is not None}
        return self.loaded

    def run(self, payloads: list[bytes], sink: ResultSink) -> None:
        """As ``ScriptHost.run``: outcomes go to ``sink`` every ``P.FLUSH_BYTES`` of results."""
        assert self.script is not None
        kinds = bytearray()
        values: list[bytes] = []
        size = start = 0

        def emit(kind: int, data: bytes) -> None:
            nonlocal kinds, values, size, start
            kinds.append(kind)
            values.append(data)
            size += len(data)
            if size >= P.FLUSH_BYTES:
                sink(start, bytes(kinds), values)
                start += len(values)
                kinds, values, size = bytearray(), [], 0

        self.script.run(payloads, emit)
        if values:
            sink(start, bytes(kinds), values)
        self.last_used = time.monotonic()

    def parse(self, chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
        import io  # noqa: PLC0415

        from ..records import IterStream  # noqa: PLC0415

        assert self.script is not None
        try:
            yield from self.script.parse_records(io.BufferedReader(IterStream(chunks)))
        except _runner.ScriptLoadError as exc:
            raise ScriptError(str(exc)) from None

    def cpu_seconds(self) -> float:
        return 0.0

    def close(self) -> None:
        self.script = None
        self.alive = False

    def __enter__(self) -> InProcessHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
