"""Run a workload's script where no key, credential, connection or other workload can be reached.

The user's code -- the script's module-level code and ``setup()``, ``parse()`` in the scheduler,
``process()`` in the processors -- runs in a *script host*: a fresh interpreter started with a
minimal environment and two pipes, which confines itself (Landlock, seccomp, rlimits; see
``_confine``) before it receives the script. The role keeps the keys: it decrypts the records
of one chunk, sends them over the pipe in one batch, and seals what comes back. A host serves one
workload and is never reused for another; it is replaced when a record times out
(``RQP_RECORD_TIMEOUT``) or the host dies (``os._exit``, a segfault, the memory limit), and only
the record in hand fails.

``RQP_SANDBOX=false`` runs the same code inside the role (benchmarks, trusted single-tenant
scripts); ``RQP_REQUIRE_SANDBOX=true`` refuses to start unless every protection is active.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator

from ..errors import ScriptError
from . import _protocol as P
from ._client import HostFailure, InProcessHost, Protections, SandboxConfig, SandboxError, ScriptHost
from ._scratch import remove_leftovers

__all__ = [
    "CRASHED",
    "IDLE_SECONDS",
    "MALFORMED",
    "MAX_ERROR_BYTES",
    "MAX_HOSTS",
    "NOT_JSON",
    "NO_SCRIPT",
    "OK",
    "PERMANENT",
    "RAISED",
    "RETRYABLE",
    "TIMED_OUT",
    "TOO_LARGE",
    "HostFactory",
    "OutcomeSink",
    "Protections",
    "SandboxConfig",
    "SandboxError",
    "ScriptPool",
    "check_script",
    "parse_records",
    "probe",
    "probe_host",
    "remove_leftovers",
]

OK, RAISED, MALFORMED, NOT_JSON = P.OK, P.RAISED, P.MALFORMED, P.NOT_JSON
TIMED_OUT, CRASHED, NO_SCRIPT, RETRYABLE = P.TIMED_OUT, P.CRASHED, P.NO_SCRIPT, P.RETRYABLE
PERMANENT, TOO_LARGE = P.PERMANENT, P.TOO_LARGE
#: the longest error message a host sends for one record (a hostile one's longer text is cut)
MAX_ERROR_BYTES = P.MAX_ERROR_BYTES

#: where ``ScriptPool.stream`` hands outcomes, as columns: ``sink(indices, kinds, payloads)`` --
#: the records' indices (ascending), a kind byte and a payload per record. Columns, not a tuple per
#: record: the common frame (all OK) is handled by the caller in a few bulk operations.
OutcomeSink = Callable[[list[int], bytes, list[bytes]], None]

#: script hosts a worker keeps alive (one per workload, least recently used first out)
MAX_HOSTS = 2
#: a host unused this long is ended, so an idle worker holds no script's memory
IDLE_SECONDS = 300.0
#: how long a script that failed to load is not tried again in this worker
BROKEN_SECONDS = 30.0

log = logging.getLogger("rqp.sandbox")
Host = ScriptHost | InProcessHost


class HostFactory:
    """Script hosts for workloads, one kept warm: a fresh interpreter takes ~50 ms of CPU to start
    and confine itself, so a spare is started ahead (it holds nothing: no workload has been given
    to it). The next spare is not started when one is taken -- that would spend those 50 ms beside
    the workload's first records -- but when the worker is idle (``make_spare``); a take that
    finds none starts one there and then."""

    def __init__(self, config: SandboxConfig, *, warm: bool = True, spare: ScriptHost | None = None) -> None:
        self.config = config
        self.warm = warm and config.enabled
        self._spare: ScriptHost | None = None
        #: how many hosts this factory has started (spares included; not a ``spare`` given to it)
        self.started = 0
        if self.warm:
            # a host started elsewhere with this configuration and given no workload (``probe_host``)
            self._spare = spare if spare is not None else self._spawn_quietly()
        elif spare is not None:
            spare.close()

    def _spawn_quietly(self) -> ScriptHost | None:
        host = ScriptHost(self.config)
        self.started += 1
        try:
            host.spawn()
        except SandboxError as exc:  # taking one will try again, and say why if it fails
            log.warning("%s", exc)
            return None
        return host

    def take(self, workload_id: str) -> Host:
        """A confined host for ``workload_id`` (or, with the sandbox off, the in-process runner)."""
        if not self.config.enabled:
            return InProcessHost(self.config, workload_id)
        for attempt in (1, 2):
            host = self._spare or ScriptHost(self.config)
            self._spare = None
            try:
                if host.proc is None:
                    self.started += 1
                    host.spawn()
                host.ready().check(self.config.require, "script host")
            except SandboxError:
                host.close()
                if attempt == 2 or not self.warm:
                    raise
                continue  # the spare may have died while it waited: one fresh try
            host.workload_id = workload_id
            return host
        raise AssertionError("unreachable")

    @property
    def wants_spare(self) -> bool:
        """Whether a spare should be started (warm, and none is waiting)."""
        return self.warm and self._spare is None

    def make_spare(self, wait: bool = False) -> None:
        """Start a spare if there is none (``wait``: until it has confined itself, so a worker
        that registers afterwards runs its first record without a start-up in between)."""
        if self.wants_spare:
            self._spare = self._spawn_quietly()
        if wait and self._spare is not None:
            try:
                self._spare.ready()
            except SandboxError as exc:  # taking one will try again, and say why if it fails
                log.warning("%s", exc)
                self._spare = None

    def close(self) -> None:
        if self._spare is not None:
            self._spare.close()
            self._spare = None


def _new_host(config: SandboxConfig | HostFactory, workload_id: str) -> Host:
    factory = config if isinstance(config, HostFactory) else HostFactory(config, warm=False)
    return factory.take(workload_id)


def probe(config: SandboxConfig) -> Protections:
    """Start a host, read what it could apply, end it: what a role logs (and checks) at start.
    It also removes the scratch directories of script hosts whose process is gone."""
    protections, host = probe_host(config)
    if host is not None:
        host.close()
    return protections


def probe_host(config: SandboxConfig) -> tuple[Protections, ScriptHost | None]:
    """``probe``, keeping the host it started (None with the sandbox off) for the role to use as
    its first spare (``HostFactory(spare=...)``): it is one -- started and confined with the same
    configuration, checked against ``RQP_REQUIRE_SANDBOX`` the same way, given no workload -- so a
    role that keeps a host warm does not start a second interpreter at its start (~50 ms of CPU;
    in ``rqp-scheduler run`` its wait was on the clock before the script check)."""
    remove_leftovers(config.tmp_root)
    if not config.enabled:
        in_process = InProcessHost(config, "probe")
        try:
            protections = in_process.start()
        finally:
            in_process.close()
        protections.check(config.require, "this host")
        return protections, None
    host = ScriptHost(config, "probe")  # its name until a workload is given to it (``take``)
    try:
        protections = host.start()
        protections.check(config.require, "this host")
    except BaseException:
        host.close()
        raise
    return protections, host


def check_script(config: SandboxConfig | HostFactory, workload_id: str, source: bytes) -> dict[str, object]:
    """Import the script and run its ``setup()`` in a host: ``ScriptError`` with the reason
    when it does not load. Returns what the host found (``{"parse": bool}``)."""
    host = _new_host(config, workload_id)
    try:
        return host.load(source)
    finally:
        host.close()


def parse_records(
    config: SandboxConfig | HostFactory, workload_id: str, source: bytes, chunks: Iterable[bytes]
) -> Iterator[tuple[bytes, str | None]]:
    """The script's ``parse()`` over the decrypted ``chunks``, in a host of its own: yields
    ``(payload, None)`` per record, or ``(b"", error)`` for one that is not JSON. The host ends
    with the generator (close it to stop early)."""
    host = _new_host(config, workload_id)
    try:
        info = host.load(source)
        if not info.get("parse"):
            raise ScriptError(
                f"workload {workload_id} was packed with --format script but its script has no parse(stream) function"
            )
        for kind, data in host.parse(chunks):
            if kind == OK:
                yield data, None
            else:
                yield b"", data.decode(errors="replace")
    finally:
        host.close()


class ScriptPool:
    """A worker's script hosts, one per workload, kept warm across chunks."""

    def __init__(
        self,
        config: SandboxConfig,
        *,
        max_hosts: int = MAX_HOSTS,
        idle_seconds: float = IDLE_SECONDS,
        warm: bool = True,
    ) -> None:
        self.config = config
        self.factory = HostFactory(config, warm=warm)
        self.max_hosts = max_hosts
        self.idle_seconds = idle_seconds
        self._hosts: OrderedDict[str, Host] = OrderedDict()
        self._broken: dict[str, tuple[float, str]] = {}
        #: CPU seconds the script hosts spent in the last ``stream`` (from /proc), None when it
        #: could not be read or a host failed mid-batch: the processor commits it so the scheduler
        #: sizes chunks by the script's CPU, not by a wall time that other processes stretch
        self.last_cpu: float | None = None

    def run(self, workload_id: str, source: Callable[[], bytes], payloads: list[bytes]) -> list[tuple[int, bytes]]:
        """``process()`` on every payload: (kind, payload) per record, in order (``stream``,
        collected: for callers whose results are small)."""
        outcomes: list[tuple[int, bytes]] = [(NO_SCRIPT, b"")] * len(payloads)

        def collect(indices: list[int], kinds: bytes, values: list[bytes]) -> None:
            for i, kind, data in zip(indices, kinds, values, strict=True):
                outcomes[i] = (kind, data)

        self.stream(workload_id, source, payloads, collect)
        return outcomes

    def stream(self, workload_id: str, source: Callable[[], bytes], payloads: list[bytes], sink: OutcomeSink) -> None:
        """``process()`` on every payload; ``sink`` gets (index, kind, payload) of each record
        exactly once, as columns (``OutcomeSink``), as its host delivers them (a few at a time,
        in no promised order), so no more than a frame of results is held here. A record that times out, returns too much or
        takes its host down fails alone; the others run in a new host."""
        self._reap()
        self.last_cpu = None
        cpu: float | None = 0.0
        todo = list(range(len(payloads)))
        one_by_one = False  # after a failure no record could be blamed for: find the culprit
        while todo:
            try:
                host = self._host(workload_id, source)
            except ScriptError as exc:
                reason = str(exc).encode()
                sink(todo, bytes([NO_SCRIPT]) * len(todo), [reason] * len(todo))
                cpu = None
                break
            batch = todo[:1] if one_by_one else todo

            def deliver(start: int, kinds: bytes, values: list[bytes], batch: list[int] = batch) -> None:
                if len(kinds) != len(values):
                    raise ValueError("a frame's kinds and values differ in number")  # as zip(strict=True) did
                sink(batch[start : start + len(values)], kinds, values)

            before = host.cpu_seconds()
            try:
                host.run([payloads[i] for i in batch], deliver)
            except HostFailure as failure:
                cpu = None  # the host is gone with its CPU time: this stream's is unknown
                self._hosts.pop(workload_id, None)
                done = failure.delivered
                if failure.index is None:
                    one_by_one = True
                    failed: set[int] = set()
                else:
                    sink([batch[failure.index]], bytes([failure.kind]), [failure.message.encode()])
                    failed = {batch[failure.index]}
                gone = failed.union(batch[:done])
                todo = [i for i in todo if i not in gone]
                continue
            todo = todo[len(batch) :]
            after = host.cpu_seconds()
            if cpu is not None:
                cpu = cpu + after - before if before > 0 and after >= before else None
            if after > self.config.cpu_seconds / 2:
                self._retire(workload_id)  # a fresh one before the CPU limit can hit a record
        self.last_cpu = cpu

    def _host(self, workload_id: str, source: Callable[[], bytes]) -> Host:
        host = self._hosts.get(workload_id)
        if host is not None and host.alive:
            self._hosts.move_to_end(workload_id)
            return host
        if host is not None:
            self._retire(workload_id)
        broken = self._broken.get(workload_id)
        if broken and time.monotonic() - broken[0] < BROKEN_SECONDS:
            raise ScriptError(broken[1])
        host = self.factory.take(workload_id)
        try:
            host.load(source())
        except ScriptError as exc:
            host.close()
            self._broken[workload_id] = (time.monotonic(), str(exc))
            raise
        self._broken.pop(workload_id, None)
        self._hosts[workload_id] = host
        while len(self._hosts) > self.max_hosts:
            _wid, old = self._hosts.popitem(last=False)
            old.close()
        return host

    def _retire(self, workload_id: str) -> None:
        host = self._hosts.pop(workload_id, None)
        if host is not None:
            host.close()

    def _reap(self) -> None:
        now = time.monotonic()
        for wid, host in list(self._hosts.items()):
            if now - host.last_used > self.idle_seconds or not host.alive:
                self._retire(wid)

    @property
    def wants_spare(self) -> bool:
        """Whether the worker should call ``make_spare`` the next time it has nothing to do."""
        return self.factory.wants_spare

    def make_spare(self, wait: bool = False) -> None:
        """Start the next workload's host ahead, while the worker has nothing else to do."""
        self.factory.make_spare(wait)

    def forget(self, workload_id: str) -> None:
        """End the workload's host (its workload is finished or was replaced)."""
        self._retire(workload_id)
        self._broken.pop(workload_id, None)

    def close(self) -> None:
        for wid in list(self._hosts):
            self._retire(wid)
        self.factory.close()
