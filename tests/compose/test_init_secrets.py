"""The registry and secrets steps (issue 24 item 28): compose/init-secrets.sh finds the container
engine as `make images` does and says what it needs (it failed with "Cannot connect to the
Docker daemon" where `make images` had found podman by itself); `make push` pushes the Redis
image too and, refused by a registry without TLS, says how to allow it.

Run for real against a stand-in `docker` on a PATH of its own."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "compose" / "init-secrets.sh"
TOOLS = (
    "bash",
    "sh",
    "dirname",
    "mkdir",
    "chmod",
    "cat",
    "sed",
    "grep",
    "seq",
    "env",
    "rm",
    "nohup",
    "sleep",
    "date",
    "head",
)


@pytest.fixture
def engine(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        real = shutil.which(tool)
        if real:
            (bin_dir / tool).symlink_to(real)
    log = tmp_path / "docker.log"

    def docker(daemon: bool, image: bool, tls: bool = True) -> None:
        refuse = 'echo "http: server gave HTTP response to HTTPS client" >&2; exit 1'
        (bin_dir / "docker").write_text(
            "#!/bin/bash\n"
            f'echo "docker $*" >> {log}\n'
            f'case "$1" in version) {"exit 0" if daemon else "exit 1"} ;; '
            f"image) {'exit 0' if image else 'exit 1'} ;; push) {'exit 0' if tls else refuse} ;; esac\nexit 0\n"
        )
        (bin_dir / "docker").chmod(0o755)

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir / "bash"), *(args or (str(SCRIPT), str(tmp_path / "secrets")))],
            env={"PATH": str(bin_dir), "PODMAN_SOCKET_SH": "/nonexistent", **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    return docker, run, log


def test_no_daemon_and_no_podman_says_so_as_make_images_does(engine):
    docker, run, _log = engine
    docker(daemon=False, image=False)
    cp = run()
    assert cp.returncode == 2 and "reaches no Docker daemon" in cp.stderr and "ENGINE=podman" in cp.stderr, cp.stderr


def test_a_missing_image_names_the_command_that_builds_it(engine):
    docker, run, log = engine
    docker(daemon=True, image=False)
    cp = run()
    assert cp.returncode == 2, cp.stderr
    assert "no image rqp-scheduler:latest on this machine" in cp.stderr and "make wheels images" in cp.stderr
    assert " run " not in log.read_text()


def test_with_the_image_it_runs_it_with_the_engine_found(engine):
    docker, run, log = engine
    docker(daemon=True, image=True)
    cp = run(RQP_VERSION="0.1.0")
    runs = [line for line in log.read_text().splitlines() if line.startswith("docker run ")]
    assert runs and "rqp-scheduler:0.1.0" in runs[0] and "--network none" in runs[0], log.read_text()
    # the stand-in made no file: the host-side check says so (an engine reporting 0 for a failure)
    assert cp.returncode == 1 and "was not created" in cp.stderr, cp.stderr


PUSH = str(ROOT / "docker" / "push-images.sh")


def test_make_push_pushes_the_redis_image_and_names_it_for_compose_env(engine):
    docker, run, log = engine
    docker(daemon=True, image=True)
    cp = run(PUSH, REGISTRY="10.0.0.9:5000/rqp", RQP_VERSION="0.1.0")
    assert cp.returncode == 0, cp.stderr
    pushed = [line.split()[-1] for line in log.read_text().splitlines() if line.startswith("docker push ")]
    assert "10.0.0.9:5000/rqp/rqp-processor:0.1.0" in pushed and pushed[-1] == "10.0.0.9:5000/rqp/redis:7", pushed
    assert "REDIS_IMAGE=10.0.0.9:5000/rqp/redis:7" in cp.stdout, cp.stdout
    log.unlink()
    cp = run(PUSH, REGISTRY="10.0.0.9:5000/rqp", PUSH_REDIS="0")
    pushed = [line for line in log.read_text().splitlines() if line.startswith("docker push ")]
    assert cp.returncode == 0 and len(pushed) == 8 and "REDIS_IMAGE" not in cp.stdout, (pushed, cp.stdout)


def test_a_registry_without_tls_gets_the_way_to_allow_it(engine):
    docker, run, _log = engine
    docker(daemon=True, image=True, tls=False)
    cp = run(PUSH, REGISTRY="10.0.0.9:5000/rqp")
    assert cp.returncode == 1, cp.stderr
    hint = cp.stderr.strip().splitlines()[-1]
    assert "10.0.0.9:5000 serves plain HTTP" in hint and '"insecure-registries": ["10.0.0.9:5000"]' in hint
    assert "registries.conf" in hint and "insecure=true" in hint, hint
