"""Finding a lone surrogate in a result as the script host encodes it (ASCII JSON, ``\\uXXXX``
escapes), so the processor fails that one record with a clear reason instead of storing text that
is not Unicode: UTF-8 has no form for it, so CSV and Parquet exports, and every reader that
decodes UTF-8, would choke on it later (README, "Records and results")."""

from __future__ import annotations

import re

__all__ = ["lone_surrogate", "surrogate_reason"]

#: a ``\\u`` escape of a surrogate (D800-DFFF) that is not itself an escaped backslash's tail
_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u([dD][89a-fA-F][0-9a-fA-F]{2})")


def lone_surrogate(data: bytes) -> str | None:
    """The first lone surrogate escape in JSON text ``data`` (``"\\ud800"``), None when every
    surrogate escape is half of a pair (a character past U+FFFF, as ASCII JSON writes emoji).
    One regular-expression scan, only when the text holds a ``\\ud`` escape at all."""
    if b"\\ud" not in data and b"\\uD" not in data:
        return None
    high: tuple[int, str] | None = None  # (end offset, escape) of a high surrogate awaiting its low
    for m in _ESCAPE.finditer(data):
        code = int(m.group(1), 16)
        text = "\\u" + m.group(1).decode().lower()
        start = m.end() - 6
        if code < 0xDC00:
            if high is not None:
                return high[1]
            high = (m.end(), text)
        elif high is not None and high[0] == start:
            high = None
        else:
            return text
    return None if high is None else high[1]


def surrogate_reason(rid: int, escape: str) -> str:
    """The one-line failure reason of record ``rid`` whose result holds the lone surrogate ``escape``."""
    return (
        f"result of record {rid} is not Unicode text: it holds a lone surrogate {escape} (no UTF-8 form; "
        f"often a byte decoded with errors='surrogateescape'); return text, e.g. decode with errors='replace'"
    )
