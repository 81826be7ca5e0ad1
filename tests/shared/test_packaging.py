"""Installing rqp is quiet and a fresh clone keeps its keys out of git (issue 24 item 16).

The install printed ~130 lines of setuptools' "`project.license` as a TOML table is deprecated";
`keys/`, where `rqp keygen` writes the private KEK by default, was one `git add .` from a commit.
Both were fixed on main; these tests keep them fixed: each package's metadata is built for real
by setuptools (the warning would be on its stderr), and git itself is asked what it ignores."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["shared", "scheduler", "processor", "metrics-logger", "console"]


@pytest.mark.parametrize("package", PACKAGES)
def test_the_license_is_an_spdx_expression_and_setuptools_builds_it_without_a_warning(package, tmp_path):
    doc = tomllib.loads((ROOT / package / "pyproject.toml").read_text())
    project = doc["project"]
    assert project["license"] == "Apache-2.0", "project.license must be an SPDX string, not a TOML table"
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")], "license classifiers"
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in doc["build-system"]["requires"])
    code = "import sys, setuptools.build_meta as b; print(b.prepare_metadata_for_build_wheel(sys.argv[1]))"
    cp = subprocess.run(
        [sys.executable, "-W", "always", "-c", code, str(tmp_path)],
        cwd=ROOT / package,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cp.returncode == 0, cp.stderr
    noise = [line for line in cp.stderr.splitlines() if "deprecat" in line.lower() or "license" in line.lower()]
    assert not noise, noise
    metadata = (tmp_path / cp.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata


def _ignored(path: str) -> bool:
    cp = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", path], timeout=30)
    assert cp.returncode in (0, 1), cp
    return cp.returncode == 0


def test_the_default_key_directory_and_secrets_are_ignored_but_the_keys_package_is_not():
    for path in ("keys/kek.pem", "keys/signer.pem", "keys/operator.pem", "secrets/kek.pem", "compose/secrets/kek.pem"):
        assert _ignored(path), f"{path} is not in .gitignore: `git add .` would commit a private key"
    for path in ("shared/src/rqp/keys/__init__.py", "tests/shared/test_keys.py"):
        assert not _ignored(path), f"{path} is ignored: the .gitignore rule is not anchored to the top"
