"""The script host: a fresh interpreter that confines itself, then runs one workload's script.

Started by ``rqp.sandbox`` as ``python -I -B _host.py PAGE_FD`` with a minimal environment and
only these file descriptors: 0 (frames from the role), 1 (frames to the role), PAGE_FD (the
shared "record in hand" page). It holds no key, no credential and no connection: the role decrypts
the records and seals the results. Standard library only, imported before the confinement is
applied; nothing of rqp's dependencies is ever loaded here.

Order matters: the descriptors are moved aside and 0-2 pointed at /dev/null (a print() in the
script goes nowhere, so no record text reaches a log), the CONFIG frame is read, the process
confines itself (``_confine.apply``), reports what is active, and only then is the script
received and executed.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import struct
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
try:
    import _confine  # type: ignore[import-not-found]
    import _protocol as P  # type: ignore[import-not-found]
    import _runner  # type: ignore[import-not-found]
finally:
    sys.path.remove(_HERE)

#: results older than this are sent even when the frame is not full. Each frame wakes the role
#: (a select, a read, the frame checked, its results sealed into the part): at 0.02 s a script of
#: 1 ms per record cost the role a wake-up every 20 records -- a cost per second, not per record.
#: Nothing waits for a frame before the batch ends (the role's timeout watches the shared page,
#: and BATCH_END flushes), so the age only bounds how long finished results sit here.
FLUSH_SECONDS = 0.25


class _Pipe:
    """Blocking frame I/O on the two protocol descriptors."""

    def __init__(self, fin: int, fout: int) -> None:
        self.fin = fin
        self.fout = fout

    def _read_exact(self, n: int) -> bytes | None:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = os.readv(self.fin, [view[got:]])
            if k == 0:
                return None
            got += k
        return bytes(buf)

    def read(self) -> tuple[int, bytes] | None:
        head = self._read_exact(P.HEADER.size)
        if head is None:
            return None
        kind, n = P.HEADER.unpack(head)
        payload = self._read_exact(n) if n else b""
        if payload is None:
            return None
        return kind, payload

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fout, view)
            view = view[n:]

    def send(self, kind: int, payload: bytes = b"") -> None:
        self.write(P.frame(kind, payload))


class _Out:
    """Values with a kind each, sent as frames of columns (``pack_columns``): flushed by size, by
    age, and on demand. RESULTS frames start with the index of their first record. A frame holds
    one value alone or values adding up to at most ``P.FLUSH_BYTES``, so it stays within
    ``P.results_frame_limit`` (the role refuses a larger one unread)."""

    def __init__(self, pipe: _Pipe, kind: int, indexed: bool) -> None:
        self.pipe = pipe
        self.kind = kind
        self.indexed = indexed
        self.kinds = bytearray()
        self.values: list[bytes] = []
        self.size = 0
        self.start = 0
        self.since = time.monotonic()

    def add(self, kind: int, value: bytes) -> None:
        if self.size + len(value) > P.FLUSH_BYTES and self.values:
            self.flush()
        self.kinds.append(kind)
        self.values.append(value)
        self.size += len(value)
        if self.size >= P.FLUSH_BYTES or time.monotonic() - self.since >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.values:
            body = P.pack_columns(bytes(self.kinds), self.values)
            self.pipe.send(self.kind, P.COUNT.pack(self.start) + body if self.indexed else body)
            self.start += len(self.values)
            self.kinds, self.values, self.size = bytearray(), [], 0
        self.since = time.monotonic()


class _DataStream(io.RawIOBase):
    """The decrypted data as the role streams it (DATA frames until DATA_END), for parse()."""

    def __init__(self, pipe: _Pipe, before_wait: _Out) -> None:
        self.pipe = pipe
        self.before_wait = before_wait
        self.buf = b""
        self.eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        while not self.buf and not self.eof:
            self.before_wait.flush()  # the role may be waiting for these records
            got = self.pipe.read()
            if got is None or got[0] == P.DATA_END:
                self.eof = True
            elif got[0] == P.DATA:
                self.buf = got[1]
            else:
                raise OSError(f"unexpected frame {got[0]} while parsing")
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


def _library_paths(extra: list[str]) -> list[str]:
    """What the script may read: this interpreter's own library paths (stdlib, site-packages),
    the system's shared libraries and time zones, and the operator's extra paths."""
    paths = {sys.base_prefix, sys.prefix, sys.base_exec_prefix, sys.exec_prefix}
    paths.update(p for p in sys.path if p and os.path.isabs(p))
    paths.update(
        (
            "/usr/lib",
            "/usr/lib64",
            "/usr/local/lib",
            "/lib",
            "/lib64",
            "/usr/share/zoneinfo",
            "/etc/localtime",
            "/etc/ld.so.cache",
            "/proc/cpuinfo",
            "/sys/devices/system/cpu",
        )
    )
    paths.update(extra)
    return sorted(p for p in paths if os.path.exists(p))


def _exposed(paths: list[str]) -> list[str]:
    """Forbidden paths (the role's keys and secrets) this process can still open."""
    out = []
    for p in paths:
        try:
            with open(p, "rb") as fh:
                fh.read(1)
        except OSError:
            continue
        out.append(p)
    return out


def _serve(pipe: _Pipe, page: mmap.mmap, permanent: frozenset[str] = frozenset(), max_result_bytes: int = 0) -> int:
    script: _runner.LoadedScript | None = None
    in_hand = memoryview(page).cast("I")  # in_hand[0]: index + 1 of the record in hand, 0 between

    while True:
        got = pipe.read()
        if got is None:
            return 0
        kind, payload = got
        if kind == P.SCRIPT:
            (n,) = struct.unpack_from(">H", payload, 0)
            wid = payload[2 : 2 + n].decode()
            try:
                script = _runner.load(payload[2 + n :], wid, permanent, max_result_bytes)
            except _runner.ScriptLoadError as exc:
                pipe.send(P.ERROR, str(exc).encode())
                continue
            pipe.send(P.LOADED, json.dumps({"parse": script.parse is not None}).encode())
        elif kind == P.BATCH and script is not None:
            out = _Out(pipe, P.RESULTS, indexed=True)
            script.run(P.unpack_batch(payload), out.add, in_hand)
            out.flush()
            pipe.send(P.BATCH_END)
        elif kind == P.PARSE and script is not None:
            out = _Out(pipe, P.RECORDS, indexed=False)
            stream = io.BufferedReader(_DataStream(pipe, out), 1 << 16)
            add = out.add
            try:
                for k, data in script.parse_records(stream):
                    add(k, data)
            except _runner.ScriptLoadError as exc:
                out.flush()
                pipe.send(P.ERROR, str(exc).encode())
                return 0
            out.flush()
            pipe.send(P.PARSE_END)
            return 0
        else:
            pipe.send(P.ERROR, f"unexpected frame {kind}".encode())
            return 2


def main() -> int:
    fin, fout = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.set_inheritable(fin, False)
    os.set_inheritable(fout, False)
    pipe = _Pipe(fin, fout)
    try:
        page_fd = int(sys.argv[1])
        page = mmap.mmap(page_fd, mmap.PAGESIZE)
        os.close(page_fd)
        got = pipe.read()
        if got is None or got[0] != P.CONFIG:
            return 2
        config = json.loads(got[1])
        os.chdir(config["tmpdir"])  # as its own uid: the role may not be able to search it
        config["read_paths"] = _library_paths(list(config.get("read_paths", ())))
        report = _confine.apply(config)
        report["exposed"] = _exposed(list(config.get("forbidden", ())))
        report["read_paths"] = config["read_paths"]
    except Exception as exc:  # noqa: BLE001 - rqp's own start-up failed: say so, then stop
        pipe.send(P.ERROR, f"the script host failed to start: {type(exc).__name__}: {exc}".encode())
        return 2
    pipe.send(P.READY, json.dumps(report).encode())
    return _serve(pipe, page, frozenset(config.get("permanent_errors", ())), int(config.get("max_result_bytes", 0)))


if __name__ == "__main__":
    sys.exit(main())
