"""Fixtures: the in-process world (tests/world.py)."""

from world import world  # noqa: F401 - a fixture
