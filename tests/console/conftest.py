"""Fixtures of the console tests: real ``rqp-console`` processes, stopped afterwards."""

from __future__ import annotations

import pytest
from world import proc, world  # noqa: F401 - the in-process scheduler/processor world and its processor, as fixtures here


@pytest.fixture
def consoles(tmp_path, operator):
    """Start ``rqp-console`` servers: ``consoles(redis_url, **env)``; all are stopped at the end.
    Each signs actions with the session's operator key and trusts it (as compose provisions a
    console); pass ``RQP_CONSOLE_OPERATOR_KEY_FILE=""`` for a console without one."""
    from .helpers import ConsoleServer

    started: list[ConsoleServer] = []

    def start(redis_url: str, **env: str) -> ConsoleServer:
        env = {
            "RQP_CONSOLE_OPERATOR_KEY_FILE": str(operator.path),
            "RQP_TRUSTED_OPERATORS_FILE": str(operator.trusted),
            **env,
        }
        c = ConsoleServer(tmp_path / f"console-{len(started)}", redis_url, env).start()
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()
