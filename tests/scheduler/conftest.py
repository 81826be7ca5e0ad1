"""Fixtures: the in-process world (tests/world.py)."""

from world import cli_env, proc, world  # noqa: F401 - fixtures
