"""`make test` on a fresh machine installs what the browser tests need (issue 24 item 21), the
way it installs Azurite: a `.tools/.chromium` target running tools/install-chromium.sh, which
uses apt-get when chromium or chromedriver is missing (through sudo when not root) and does
nothing when both are there; `.ci/run` runs the README's own `make test`.

The script runs for real against stand-ins of apt-get, sudo and id on a PATH of their own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "install-chromium.sh"


def _stub(bin_dir: Path, name: str, body: str) -> None:
    p = bin_dir / name
    p.write_text("#!/bin/bash\n" + body + "\n")
    p.chmod(0o755)


@pytest.fixture
def machine(tmp_path):
    """A PATH holding only bash, env and stand-ins; apt-get logs its arguments and, on install,
    puts chromium and chromedriver on that PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    log = tmp_path / "calls.log"
    _stub(
        bin_dir,
        "apt-get",
        f'echo "apt-get $*" >> {log}\n'
        f'if [ "$1" = install ] || [ "$2" = install ]; then for b in chromium chromedriver; do '
        f'printf "#!/bin/bash\\n" > {bin_dir}/$b; /bin/chmod 755 {bin_dir}/$b; done; fi',
    )
    _stub(bin_dir, "id", "echo 0")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir / "bash"), str(SCRIPT)],
            env={"PATH": str(bin_dir)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    return bin_dir, log, run


def test_it_installs_both_with_apt_when_missing_and_then_does_nothing(machine):
    bin_dir, log, run = machine
    cp = run()
    assert cp.returncode == 0, cp.stderr
    calls = log.read_text().splitlines()
    assert calls[-1].endswith("install -yq --no-install-recommends chromium chromium-driver"), calls
    assert os.access(bin_dir / "chromium", os.X_OK) and os.access(bin_dir / "chromedriver", os.X_OK)
    log.unlink()
    cp = run()
    assert cp.returncode == 0 and "already on PATH" in cp.stdout and not log.exists(), cp.stdout


def test_not_root_it_goes_through_sudo(machine):
    bin_dir, log, run = machine
    _stub(bin_dir, "id", "echo 1000")
    _stub(bin_dir, "sudo", f'echo "sudo $*" >> {log}\n[ "$1" = -n ] && shift\nexec "$@"')
    cp = run()
    assert cp.returncode == 0, cp.stderr
    assert any(
        c.startswith("sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install") for c in log.read_text().splitlines()
    )


def test_without_a_way_to_install_it_fails_with_the_command_to_run(machine):
    bin_dir, _log, run = machine
    _stub(bin_dir, "id", "echo 1000")  # not root, and no sudo
    cp = run()
    assert cp.returncode == 1 and "apt-get install -y chromium chromium-driver" in cp.stderr, cp.stderr
    (bin_dir / "apt-get").unlink()
    cp = run()
    assert cp.returncode == 1 and "no apt-get here" in cp.stderr, cp.stderr


def test_make_test_depends_on_it_and_ci_runs_the_readmes_command():
    makefile = (ROOT / "Makefile").read_text()
    prereqs = re.search(r"(?m)^test: (.*)$", makefile)
    assert prereqs and ".tools/.chromium" in prereqs.group(1).split(), prereqs
    rule = re.search(r"(?m)^\.tools/\.chromium:\n((?:\t.*\n)+)", makefile)
    assert rule and "bash tools/install-chromium.sh" in rule.group(1), rule
    readme = (ROOT / "README.md").read_text()
    assert "make test   # the whole test suite" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"(?m)^make test$", ci), "CI does not run the README's make test"
