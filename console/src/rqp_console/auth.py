"""Who may log in, and how fast anyone may guess.

One operator account: the user name from ``RQP_CONSOLE_USER``, the password from a file. The
password is kept only as a salted scrypt digest made at start, and a login attempt is compared
digest to digest with ``hmac.compare_digest``, doing the same work whether the user name, the
password, both or neither are wrong -- so neither the time an answer takes nor a memory dump of
a long-running console gives the password away. Failed attempts are limited per client address
and in total (``LoginLimiter``), so guessing costs minutes per handful of tries.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import defaultdict, deque

__all__ = ["Credentials", "LoginLimiter"]

#: scrypt cost: ~30-60 ms per attempt on a small VM; the limiter caps attempts anyway
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class Credentials:
    """The operator account; ``check`` is constant-time in everything an attacker controls."""

    def __init__(self, user: str, password: str) -> None:
        self._salt = os.urandom(16)
        self._user = self._digest(user)
        self._password = self._digest(password)

    def _digest(self, value: str) -> bytes:
        return hashlib.scrypt(value.encode(), salt=self._salt, **_SCRYPT)

    def check(self, user: str, password: str) -> bool:
        user_ok = hmac.compare_digest(self._digest(user), self._user)
        password_ok = hmac.compare_digest(self._digest(password), self._password)
        return user_ok & password_ok  # both digests are always computed and compared


class LoginLimiter:
    """Failed logins in a sliding window: ``per_client`` per address per ``window`` seconds, and
    ten times that in total (a guesser with many addresses is slowed too). Thread-safe."""

    def __init__(self, per_client: int, window: float = 60.0) -> None:
        self.per_client = per_client
        self.total = per_client * 10
        self.window = window
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._all: deque[float] = deque()

    def _trim(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - self.window:
            q.popleft()

    def wait_seconds(self, client: str, now: float | None = None) -> float:
        """0 when ``client`` may try now, else how long until it may."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._failures.get(client)
            if q is not None:
                self._trim(q, now)
                if not q:
                    del self._failures[client]
            self._trim(self._all, now)
            waits = []
            if q and len(q) >= self.per_client:
                waits.append(q[0] + self.window - now)
            if len(self._all) >= self.total:
                waits.append(self._all[0] + self.window - now)
            return max(waits, default=0.0)

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._failures[client].append(now)
            self._all.append(now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
