"""Fixtures of the console tests: real ``rqp-console`` processes, stopped afterwards."""

from __future__ import annotations

import pytest
from world import world  # noqa: F401 - the in-process scheduler/processor world, as a fixture here


@pytest.fixture
def consoles(tmp_path):
    """Start ``rqp-console`` servers: ``consoles(redis_url, **env)``; all are stopped at the end."""
    from .helpers import ConsoleServer

    started: list[ConsoleServer] = []

    def start(redis_url: str, **env: str) -> ConsoleServer:
        c = ConsoleServer(tmp_path / f"console-{len(started)}", redis_url, env).start()
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()
