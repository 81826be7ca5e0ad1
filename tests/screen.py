"""A terminal model for tests of what is drawn on a terminal (``rqp status --watch``, the demo's
progress): replaying the bytes a program wrote shows what a person would be left looking at."""

from __future__ import annotations

import re

__all__ = ["Screen"]


class Screen:
    """Just enough of a terminal to replay what ``rqp status --watch`` writes: printable text,
    CR, LF, cursor up (CSI n A), erase to end of line (CSI K) and of screen (CSI J), auto-wrap
    at the last column -- which is how debris would appear -- recorded as ``wrapped``."""

    def __init__(self, columns: int) -> None:
        self.columns = columns
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0
        self.wrapped = 0

    def _line(self) -> list[str]:
        while len(self.rows) <= self.row:
            self.rows.append([])
        return self.rows[self.row]

    def feed(self, text: str) -> None:
        for m in re.finditer(r"\x1b\[(\d*)([A-Za-z])|(.)", text, re.S):
            n, op, ch = m.groups()
            if op == "A":
                self.row = max(0, self.row - int(n or 1))
            elif op == "K":
                del self._line()[self.col :]
            elif op == "J":
                del self._line()[self.col :]
                del self.rows[self.row + 1 :]
            elif ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row += 1
                self._line()
            elif ch is not None and ch.isprintable():
                if self.col >= self.columns:
                    self.wrapped += 1
                    self.row, self.col = self.row + 1, 0
                line = self._line()
                line[self.col : self.col + 1] = [ch] if self.col < len(line) else [" "] * (self.col - len(line)) + [ch]
                self.col += 1

    def text(self) -> list[str]:
        return ["".join(r).rstrip() for r in self.rows if "".join(r).strip()]
