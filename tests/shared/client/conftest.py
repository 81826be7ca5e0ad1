# ruff: noqa: F811 - the fixtures imported below are parameters of the ones defined here
"""Fixtures: the in-process world (tests/world.py) and a ``rqp.Client`` over it."""

from __future__ import annotations

from typing import Any

import pytest
from world import proc, world  # noqa: F401 - fixtures

import rqp


@pytest.fixture
def client(world: Any, signer: Any, operator: Any) -> rqp.Client:
    """A client of the world's deployment, configured as a user's environment would be."""
    c = rqp.Client(
        redis_url=world.settings.redis_url,
        blob_url=world.settings.blob_url,
        kek_file=str(world.settings.kek_file),
        allow_insecure_redis=True,
    )
    yield c
    c.close()


@pytest.fixture
def run_to_end(world: Any, proc: Any) -> Any:
    """What a serving scheduler and a processor would do with a submitted workload, in process."""

    def finish(wid: str) -> None:
        world.run_to_end(world.run(wid), proc)

    return finish
