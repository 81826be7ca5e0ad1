"""Fixtures of the shared-package tests: ``env`` (the CLI pointed at the test servers)."""

from cli_helpers import env  # noqa: F401 - a fixture
