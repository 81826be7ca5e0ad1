"""Load a workload's processing script from memory, never from disk.

The script contract: ``process(record) -> result`` (required; record and result are JSON values),
``parse(stream) -> iterable of records`` (optional; ``stream`` is a binary file object of the
decrypted data, for formats rqp does not know), ``setup()`` (optional; called once per process).
"""

from __future__ import annotations

import linecache
import sys
import types
from collections.abc import Callable
from typing import Any

from .errors import ScriptError

__all__ = ["Script", "load_script"]


class Script:
    def __init__(self, module: types.ModuleType, workload_id: str) -> None:
        self.module = module
        self.workload_id = workload_id
        process = getattr(module, "process", None)
        if not callable(process):
            raise ScriptError(
                f"the script of workload {workload_id} defines no process(record) function; add one (see the README's script contract)"
            )
        self.process: Callable[[Any], Any] = process
        parse = getattr(module, "parse", None)
        self.parse: Callable[[Any], Any] | None = parse if callable(parse) else None
        setup = getattr(module, "setup", None)
        if callable(setup):
            try:
                setup()
            except Exception as exc:  # the user's code: any exception is theirs to report
                raise ScriptError(
                    f"setup() in the script of workload {workload_id} raised {type(exc).__name__}: {exc}"
                ) from None


def load_script(source: bytes, workload_id: str) -> Script:
    """Compile and execute ``source`` as a fresh module; the plaintext stays in this process."""
    filename = f"<rqp-script {workload_id}>"
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError:
        raise ScriptError(
            f"the script of workload {workload_id} is not UTF-8 text; pack a Python source file"
        ) from None
    # tracebacks show script lines from memory (linecache), so errors stay useful without a file
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    module = types.ModuleType(f"rqp_script_{workload_id.replace('-', '_').replace('.', '_')}")
    module.__file__ = filename
    try:
        code = compile(text, filename, "exec")
        sys.modules[module.__name__] = module  # lets dataclasses and pickle-free helpers resolve the module
        exec(code, module.__dict__)  # noqa: S102 - running the user's own authenticated script is the point
    except SyntaxError as exc:
        raise ScriptError(
            f"the script of workload {workload_id} has a syntax error at line {exc.lineno}: {exc.msg}"
        ) from None
    except Exception as exc:
        line = _script_line(exc, filename)
        raise ScriptError(
            f"the script of workload {workload_id} failed to import{line}: {type(exc).__name__}: {exc}"
        ) from None
    return Script(module, workload_id)


def _script_line(exc: BaseException, filename: str) -> str:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (line {line})" if line else ""


def describe_exception(exc: BaseException, workload_id: str) -> str:
    """One line for a status record: type, message and the script line that raised."""
    line = _script_line(exc, f"<rqp-script {workload_id}>")
    msg = " ".join(str(exc).split())
    if len(msg) > 500:
        msg = msg[:497] + "..."
    return f"{type(exc).__name__}: {msg}{line}"
