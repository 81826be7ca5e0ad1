"""A command run on a real pseudo-terminal of a given size, for tests of what it draws there
(``rqp status --watch``, the demo's progress): its bytes are collected as they come, and
``screen()`` replays them on the terminal model (``screen.Screen``).

Why one place: the 80-column tests of ``rqp status --watch`` (running, refused) and of the demo
each opened the terminal, sized it, started the command and drained its output with their own copy.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from screen import Screen

__all__ = ["COLUMNS", "PtyCommand"]

#: the terminal width the tests draw on
COLUMNS = 80
ROWS = 24


class PtyCommand:
    """``argv`` started with its stdout and stderr on a new pseudo-terminal ``columns`` wide.
    ``drawn`` is set once its output holds ``marker``; ``close()`` kills it if it still runs and
    waits until every process holding the terminal has let go, so the output is whole."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | str,
        env: Mapping[str, str] | None = None,
        marker: bytes | None = None,
        columns: int = COLUMNS,
        rows: int = ROWS,
    ) -> None:
        self.columns = columns
        self.got = bytearray()
        self.drawn = threading.Event()
        self._marker = marker
        self._master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        base = os.environ if env is None else env
        # the terminal's size is the pty's: no COLUMNS/LINES left over from the test's own terminal
        env = {**{k: v for k, v in base.items() if k not in ("COLUMNS", "LINES")}, "TERM": "xterm"}
        try:
            self.process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd, env=env
            )
        finally:
            os.close(slave)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # EIO: the other side closed
                return
            if not chunk:
                return
            self.got.extend(chunk)
            if self._marker is not None and self._marker in self.got:
                self.drawn.set()

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(10)  # until every process the command started has closed the terminal
        os.close(self._master)

    def output(self, errors: str = "strict") -> str:
        return self.got.decode(errors=errors)

    def screen(self, errors: str = "strict") -> Screen:
        """What a person would be left looking at."""
        screen = Screen(self.columns)
        screen.feed(self.output(errors))
        return screen
