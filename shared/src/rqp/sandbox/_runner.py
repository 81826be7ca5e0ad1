"""Load a workload's script from memory and call it: the only code that touches the user's code.

Standard library only. It runs inside the script host (a confined process of its own), or, with
``RQP_SANDBOX=off``, inside the role itself -- the same code either way, so the two modes differ
only in where they run.

The script contract: ``process(record) -> result`` (required; record and result are JSON values),
``parse(stream) -> iterable of records`` (optional; ``stream`` is a binary file object of the
decrypted data, for formats rqp does not know), ``setup()`` (optional; once per script process).
"""

from __future__ import annotations

import importlib.util
import linecache
import sys
import types
from collections.abc import Callable, Iterable, Iterator

TYPE_CHECKING = False  # the host imports no more than it must (typing costs milliseconds at each start)
if TYPE_CHECKING:
    from typing import Any

try:
    from . import _jsonsafe as J
    from . import _protocol as P
except ImportError:  # inside the script host, where this directory is imported as top-level modules
    import _jsonsafe as J  # type: ignore[import-not-found,no-redef]
    import _protocol as P  # type: ignore[import-not-found,no-redef]

__all__ = ["LoadedScript", "ScriptLoadError", "describe_exception", "load", "script_filename"]

_ENCODE = J.dumps  # strict: NaN, Infinity and over-deep nesting are refused (JSONRejected)


class ScriptLoadError(Exception):
    """The script does not load: one line, for the workload's error."""


def script_filename(workload_id: str) -> str:
    return f"<rqp-script {workload_id}>"


def _script_line(exc: BaseException, filename: str) -> str:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (line {line})" if line else ""


def _one_line(exc: BaseException) -> str:
    try:
        msg = " ".join(str(exc).split())
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not take the host down
        msg = "<message could not be formatted>"
    if len(msg) > 500:
        msg = msg[:497] + "..."
    return f"{type(exc).__name__}: {msg}"


def describe_exception(exc: BaseException, workload_id: str) -> str:
    """One line for a status record: type, message and the script line that raised."""
    return _one_line(exc) + _script_line(exc, script_filename(workload_id))


class PermanentError(Exception):
    """What a script raises to fail a record at once, without retries (``from rqp import
    PermanentError``): the record is wrong, not the moment."""


class _ScriptApi:
    """The ``rqp`` a script sees inside a script host, where rqp itself is never loaded: a module
    with just ``PermanentError``, made only if the script imports it. (In a role's own process,
    with the sandbox off, the real ``rqp`` is found first and exports the same name.) A finder
    and loader by protocol, not by subclassing ``importlib.abc``: importing that costs a fresh
    host ~25 ms (it pulls in importlib.resources and pathlib)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        return importlib.util.spec_from_loader(name, self) if name == "rqp" else None  # type: ignore[arg-type]  # exec_module is the protocol used

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        module.__doc__ = "rqp's script API: raise rqp.PermanentError to fail a record without retries"
        PermanentError.__module__ = "rqp"
        module.PermanentError = PermanentError  # type: ignore[attr-defined]


_SCRIPT_API = _ScriptApi()


def is_permanent(exc: BaseException, names: frozenset[str]) -> bool:
    """Whether ``exc`` fails its record for good: an ``rqp.PermanentError`` (either rqp's), or an
    instance of a type named in ``names`` (``KeyError`` or ``module.Name``)."""
    for cls in type(exc).__mro__:
        if cls.__name__ == "PermanentError" and (cls.__module__ == "rqp" or cls.__module__.startswith("rqp.")):
            return True
        if cls.__name__ in names or f"{cls.__module__}.{cls.__qualname__}" in names:
            return True
    return False


def _error(text: str) -> bytes:
    """An error message for one record, cut to ``MAX_ERROR_BYTES`` (an exception's type name and
    text are the script's to make as long as it likes)."""
    return text.encode(errors="replace")[: P.MAX_ERROR_BYTES]


#: records parsed in one loop before ``process()`` runs on them (at most this many, and past the
#: first at most ``PARSE_AHEAD_BYTES`` of their JSON): the parse runs with warm caches instead of
#: after each record's script time, and the parsed group stays small whatever the chunk's size
PARSE_AHEAD_RECORDS = 64
PARSE_AHEAD_BYTES = 256 << 10


class _Malformed:
    """A record of a parsed group that is not valid JSON, with why (never a value JSON yields)."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


class LoadedScript:
    def __init__(
        self,
        module: types.ModuleType,
        workload_id: str,
        permanent: frozenset[str] = frozenset(),
        max_result_bytes: int = 0,
    ) -> None:
        self.workload_id = workload_id
        self.permanent = permanent
        #: a result larger than this (bytes of JSON) is not sent: the record fails TOO_LARGE (0: no limit)
        self.max_result_bytes = max_result_bytes
        process = getattr(module, "process", None)
        if not callable(process):
            raise ScriptLoadError(
                f"the script of workload {workload_id} defines no process(record) function; add one (see the README's script contract)"
            )
        self.process: Callable[[Any], Any] = process
        parse = getattr(module, "parse", None)
        self.parse: Callable[[Any], Iterable[Any]] | None = parse if callable(parse) else None
        setup = getattr(module, "setup", None)
        if callable(setup):
            try:
                setup()
            except BaseException as exc:  # noqa: BLE001 - the user's code: whatever it raises is theirs
                raise ScriptLoadError(
                    f"setup() in the script of workload {workload_id} raised {describe_exception(exc, workload_id)}"
                ) from None

    def run(self, payloads: list[bytes], emit: Callable[[int, bytes], None], in_hand: Any = None) -> None:
        """Call ``process`` on each record; ``emit(kind, payload)`` per record, in order.
        ``in_hand`` (a writable ``memoryview`` of one u32) gets index + 1 of the record in hand --
        the one being parsed, then the one being processed. A result over ``max_result_bytes`` is
        dropped here and its record fails ``TOO_LARGE``.

        Records are parsed a group at a time (``PARSE_AHEAD_RECORDS``, ``PARSE_AHEAD_BYTES``)
        before ``process()`` sees the first of them: parsed one by one between two calls of a
        script that runs a millisecond, each parse met caches the machine's other processes had
        emptied in between and cost ~3x its time in a loop (issue 28)."""
        process = self.process
        limit = self.max_result_bytes or sys.maxsize
        loads = J.loads
        wid = self.workload_id
        permanent = self.permanent
        n = len(payloads)
        first = 0
        while first < n:
            # parse ahead: ``parsed[k]`` is record first + k, or the reason it is not valid JSON
            parsed: list[Any] = []
            size = 0
            end = first
            while end < n and end - first < PARSE_AHEAD_RECORDS and (end == first or size < PARSE_AHEAD_BYTES):
                payload = payloads[end]
                size += len(payload)
                if in_hand is not None:
                    in_hand[0] = end + 1  # a parse that takes the host down fails its own record
                try:
                    parsed.append(loads(payload))
                except ValueError as exc:  # J.JSONRejected: one line, "not valid JSON (...)" or why else
                    parsed.append(_Malformed(f"malformed record: {exc}"))
                end += 1
            for i in range(first, end):
                record = parsed[i - first]
                if in_hand is not None:
                    in_hand[0] = i + 1
                if type(record) is _Malformed:
                    emit(P.MALFORMED, _error(record.why))
                    continue
                try:
                    result = process(record)
                except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt fail the record too
                    if permanent is not None and is_permanent(exc, permanent):
                        emit(
                            P.PERMANENT,
                            _error(f"process() raised {describe_exception(exc, wid)} (permanent: not retried)"),
                        )
                    else:
                        emit(P.RAISED, _error(f"process() raised {describe_exception(exc, wid)}"))
                    continue
                try:
                    out = _ENCODE(result)
                except J.JSONRejected as exc:
                    emit(P.NOT_JSON, f"result is not valid JSON: {exc}".encode())
                    continue
                except BaseException as exc:  # noqa: BLE001
                    emit(
                        P.NOT_JSON,
                        _error(
                            f"process() returned a value that is not JSON-serializable: {describe_exception(exc, wid)}"
                        ),
                    )
                    continue
                if len(out) > limit:  # ASCII (the encoder escapes the rest): its length is its size in bytes
                    emit(P.TOO_LARGE, P.too_large(len(out), limit).encode())
                    continue
                emit(P.OK, out.encode())
            del parsed  # the group's records are the script's now (it may keep them); not held here
            first = end
        if in_hand is not None:
            in_hand[0] = 0

    def parse_records(self, stream: Any) -> Iterator[tuple[int, bytes]]:
        """(kind, payload) per record ``parse(stream)`` yields; raises ``ScriptLoadError`` (with
        how far it got) when parse() itself raises."""
        if self.parse is None:
            raise ScriptLoadError(
                f"workload {self.workload_id} was packed with --format script but its script has no parse(stream) function"
            )
        n = 0
        try:
            for record in self.parse(stream):
                try:
                    payload = _ENCODE(record).encode()
                except J.JSONRejected as exc:
                    yield P.NOT_JSON, f"parse() produced a record that is not valid JSON: {exc}".encode()
                except BaseException as exc:  # noqa: BLE001
                    yield (
                        P.NOT_JSON,
                        f"parse() produced a record that is not JSON-serializable: {describe_exception(exc, self.workload_id)}".encode(),
                    )
                else:
                    yield P.OK, payload
                n += 1
        except ScriptLoadError:
            raise
        except BaseException as exc:  # noqa: BLE001
            raise ScriptLoadError(
                f"parse() in the script of workload {self.workload_id} raised after {n} records: {describe_exception(exc, self.workload_id)}"
            ) from None


def load(
    source: bytes, workload_id: str, permanent: frozenset[str] = frozenset(), max_result_bytes: int = 0
) -> LoadedScript:
    """Compile and execute ``source`` as a fresh module (never from a file), then ``setup()``.
    ``permanent``: exception type names that fail a record without retries; ``max_result_bytes``:
    the largest result sent (0: no limit)."""
    if "rqp" not in sys.modules and _SCRIPT_API not in sys.meta_path:
        sys.meta_path.insert(0, _SCRIPT_API)  # a role's own process has the real one
    filename = script_filename(workload_id)
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError:
        raise ScriptLoadError(
            f"the script of workload {workload_id} is not UTF-8 text; pack a Python source file"
        ) from None
    # tracebacks show script lines from memory (linecache), so errors stay useful without a file
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    module = types.ModuleType(f"rqp_script_{workload_id.replace('-', '_').replace('.', '_')}")
    module.__file__ = filename
    try:
        code = compile(text, filename, "exec")
        sys.modules[module.__name__] = module  # lets dataclasses and similar helpers resolve the module
        exec(code, module.__dict__)  # noqa: S102 - running the user's own authenticated script is the point
    except SyntaxError as exc:
        raise ScriptLoadError(
            f"the script of workload {workload_id} has a syntax error at line {exc.lineno}: {exc.msg}"
        ) from None
    except BaseException as exc:  # noqa: BLE001 - SystemExit at import is a load failure too
        line = _script_line(exc, filename)
        raise ScriptLoadError(
            f"the script of workload {workload_id} failed to import{line}: {_one_line(exc)}"
        ) from None
    return LoadedScript(module, workload_id, permanent, max_result_bytes)
