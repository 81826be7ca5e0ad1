"""The console's own settings, read from ``RQP_CONSOLE_*`` environment variables.

The shared ones (which Redis to read, the blob store holding the metrics, the queues, and the KEK
when an operator chooses to give it) stay in ``rqp.config.Settings``. These are what only a web
console needs: where to listen, who may log in, and the second Redis identity its actions use.
Secrets are files, never values: the login password comes from ``RQP_CONSOLE_PASSWORD_FILE``,
and a password put in the environment is refused rather than silently used.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rqp.config import settings_from_env
from rqp.errors import ConfigError
from rqp.sentinel import SENTINEL_SCHEMES

__all__ = ["DEFAULT_BIND", "DEFAULT_PORT", "DEFAULT_USER", "ENV_NAMES", "ConsoleSettings"]

DEFAULT_BIND = "127.0.0.1"
DEFAULT_PORT = 9180
DEFAULT_USER = "admin"
DEFAULT_SESSION_HOURS = 12.0
DEFAULT_LOGIN_ATTEMPTS = 5
DEFAULT_REFRESH_SECONDS = 1.5
DEFAULT_THREADS = 8
#: the shortest login password accepted (compose/init-secrets.sh writes 64 hex characters)
MIN_PASSWORD_LENGTH = 12

#: setting name -> environment variable
ENV_NAMES = {
    "bind": "RQP_CONSOLE_BIND",
    "port": "RQP_CONSOLE_PORT",
    "user": "RQP_CONSOLE_USER",
    "password_file": "RQP_CONSOLE_PASSWORD_FILE",
    "actions_redis_url": "RQP_CONSOLE_ACTIONS_REDIS_URL",
    "actions_password_file": "RQP_CONSOLE_ACTIONS_PASSWORD_FILE",
    "session_key_file": "RQP_CONSOLE_SESSION_KEY_FILE",
    "operator_key_file": "RQP_CONSOLE_OPERATOR_KEY_FILE",
    "session_hours": "RQP_CONSOLE_SESSION_HOURS",
    "allowed_hosts": "RQP_CONSOLE_ALLOWED_HOSTS",
    "trusted_proxy": "RQP_CONSOLE_TRUSTED_PROXY",
    "login_attempts": "RQP_CONSOLE_LOGIN_ATTEMPTS",
    "refresh_seconds": "RQP_CONSOLE_REFRESH",
    "threads": "RQP_CONSOLE_THREADS",
}

#: environment variables that would put a secret where it leaks (process lists, `docker inspect`)
_REFUSED_ENV = {
    "RQP_CONSOLE_PASSWORD": "RQP_CONSOLE_PASSWORD_FILE",
    "RQP_CONSOLE_ACTIONS_PASSWORD": "RQP_CONSOLE_ACTIONS_PASSWORD_FILE",
}

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ConsoleSettings:
    #: address to listen on; loopback unless told otherwise (reach it through an SSH tunnel)
    bind: str = DEFAULT_BIND
    port: int = DEFAULT_PORT
    #: the one operator account's user name
    user: str = DEFAULT_USER
    #: file holding the login password (required: there is no default password)
    password_file: Path | None = None
    #: Redis for the actions (pause, resume, cancel, retry), as a user allowed to write; unset:
    #: the console is read-only and shows no action buttons
    actions_redis_url: str | None = None
    actions_password_file: Path | None = None
    #: the console's own operator key (Ed25519 PEM, ``rqp keygen --operator``): it signs every
    #: action on behalf of the logged-in person; its public half belongs in the roles'
    #: ``RQP_TRUSTED_OPERATORS_FILE``. Unset: actions are refused (never posted unsigned)
    operator_key_file: Path | None = None
    #: file holding the key that signs session cookies (optional: without it a random key per
    #: start, so a restart logs everyone out)
    session_key_file: Path | None = None
    #: a login lasts at most this long
    session_hours: float = DEFAULT_SESSION_HOURS
    #: extra host names the console answers to (besides loopback and ``bind``), comma-separated;
    #: requests naming another Host are refused (DNS rebinding)
    allowed_hosts: str = ""
    #: the address of a TLS-terminating proxy whose X-Forwarded-Proto/For headers are believed
    trusted_proxy: str | None = None
    #: failed logins per client address per minute before it must wait
    login_attempts: int = DEFAULT_LOGIN_ATTEMPTS
    #: how often the pages refresh their numbers (seconds)
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    #: request threads (each page refresh is one request)
    threads: int = DEFAULT_THREADS

    def __post_init__(self) -> None:
        self._validate()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ConsoleSettings:
        """Environment first, then explicit overrides (command-line flags); ``None`` is ignored."""
        env = os.environ if env is None else env
        for var, instead in _REFUSED_ENV.items():
            if env.get(var):
                raise ConfigError(
                    f"{var} is not read: a password does not belong in the environment; put it in a file and name it in {instead}"
                )
        return settings_from_env(cls, ENV_NAMES, what="console", env=env, overrides=overrides)

    @property
    def actions_enabled(self) -> bool:
        return self.actions_redis_url is not None

    @property
    def hosts(self) -> frozenset[str]:
        """Host names (no port) the console answers to."""
        names = {*_LOOPBACK, *(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())}
        if self.bind not in ("0.0.0.0", "::", ""):
            names.add(self.bind.lower())
        return frozenset(names)

    def _validate(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigError(f"RQP_CONSOLE_PORT must be a TCP port (1-65535), got {self.port}")
        if not self.user or any(c.isspace() for c in self.user):
            raise ConfigError(f"RQP_CONSOLE_USER must be a non-empty name without spaces, got {self.user!r}")
        if self.session_hours <= 0:
            raise ConfigError(f"RQP_CONSOLE_SESSION_HOURS must be positive, got {self.session_hours:g}")
        if self.login_attempts < 1:
            raise ConfigError(f"RQP_CONSOLE_LOGIN_ATTEMPTS must be at least 1, got {self.login_attempts}")
        if not 0.5 <= self.refresh_seconds <= 30:
            raise ConfigError(f"RQP_CONSOLE_REFRESH must be 0.5 to 30 seconds, got {self.refresh_seconds:g}")
        if not 1 <= self.threads <= 64:
            raise ConfigError(f"RQP_CONSOLE_THREADS must be 1 to 64, got {self.threads}")
        if self.actions_password_file is not None and self.actions_redis_url is None:
            raise ConfigError(
                "RQP_CONSOLE_ACTIONS_PASSWORD_FILE is set but RQP_CONSOLE_ACTIONS_REDIS_URL is not; name the Redis "
                "URL (with the actions user: rediss://console-actions@host:6379/0) or drop the password file"
            )
        if self.actions_redis_url is not None:
            parts = urllib.parse.urlsplit(self.actions_redis_url)
            if parts.scheme not in ("redis", "rediss", "unix", *SENTINEL_SCHEMES):
                raise ConfigError(
                    "RQP_CONSOLE_ACTIONS_REDIS_URL must start with redis://, rediss://, unix:// or "
                    "redis+sentinel:// (rediss+sentinel://)"
                )
            if parts.password:
                raise ConfigError(
                    "RQP_CONSOLE_ACTIONS_REDIS_URL carries a password; put it in a file and name it in "
                    "RQP_CONSOLE_ACTIONS_PASSWORD_FILE"
                )

    def read_password(self) -> str:
        """The login password, from its file; ``ConfigError`` when there is none or it is weak."""
        if self.password_file is None:
            raise ConfigError(
                "no console password: set RQP_CONSOLE_PASSWORD_FILE to a file holding it (compose/init-secrets.sh "
                "writes one); the console has no default password"
            )
        try:
            password = self.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"console password file {self.password_file} cannot be read ({exc.strerror}); mount it read-only or fix RQP_CONSOLE_PASSWORD_FILE"
            ) from None
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ConfigError(
                f"the console password in {self.password_file} is {'empty' if not password else 'shorter than ' + str(MIN_PASSWORD_LENGTH) + ' characters'}; write a long random one (e.g. openssl rand -hex 32)"
            )
        return password

    def read_session_key(self) -> bytes | None:
        if self.session_key_file is None:
            return None
        try:
            key = self.session_key_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(
                f"console session key file {self.session_key_file} cannot be read ({exc.strerror}); fix RQP_CONSOLE_SESSION_KEY_FILE"
            ) from None
        if len(key) < 32:
            raise ConfigError(f"the console session key in {self.session_key_file} is shorter than 32 bytes")
        return key
