"""A small time-to-live memo, so ten browser tabs cost Redis what one does.

Each page polls every second or two; every answer is computed at most once per ``ttl`` seconds
per key, whoever asks. Thread-safe (waitress serves requests from several threads); a value being
computed is computed once, the other askers wait for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["TtlCache"]


class TtlCache:
    def __init__(self, max_entries: int = 512) -> None:
        self.max_entries = max_entries
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, ttl: float, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        hit = self._values.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._values.get(key)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
            value = compute()
            with self._guard:
                if len(self._values) >= self.max_entries:
                    self._evict()
                self._values[key] = (time.monotonic() + ttl, value)
            return value

    def invalidate(self, key: Hashable) -> None:
        with self._guard:
            self._values.pop(key, None)

    def _evict(self) -> None:
        now = time.monotonic()
        for k in [k for k, (until, _) in self._values.items() if until <= now]:
            self._values.pop(k, None)
            self._locks.pop(k, None)
        while len(self._values) >= self.max_entries:
            k = next(iter(self._values))
            self._values.pop(k, None)
            self._locks.pop(k, None)
