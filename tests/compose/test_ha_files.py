"""The three-VM high-availability layout (issue 26 item 6): compose/sentinel.yml, compose/ha.yml
(over scheduler-vm.yml) and compose/ha-processor.yml (over processor-vm.yml). What
`tools/test-vms-ha.sh` runs for real is checked here as text, so a change that breaks it shows up
without containers: every secret they mount is a file init-secrets.sh --ha makes, every role finds
the primary through the Sentinels as its own Redis user, and every Redis link is TLS."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
HA_FILES = ("sentinel.yml", "ha.yml", "ha-processor.yml")
SENTINEL_URL = re.compile(r"RQP_REDIS_URL: rediss\+sentinel://([\w-]+)@\$\{REDIS_SENTINELS[^}]*\}/rqp/0")


def text(name: str) -> str:
    return (COMPOSE / name).read_text()


def services(name: str) -> dict[str, str]:
    """The top-level services' blocks of a Compose file, by name."""
    body = re.search(r"(?ms)^services:\n(.*?)(?=^\S)", text(name) + "\nend:\n").group(1)
    parts = re.split(r"(?m)^  ([\w-]+):\n", body)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def init_secrets_files() -> set[str]:
    """The files init-secrets.sh checks it made (its last lines, --ha included)."""
    script = text("init-secrets.sh")
    tail = script[script.index("# Check on the host too") :]
    return set(
        re.findall(r"[\w.]+\.(?:pem|key|acl)|\b(?:redis|sentinel)_\w+_password\b|\b\w+_password\b|azure_conn", tail)
    )


@pytest.mark.parametrize("name", HA_FILES)
def test_every_secret_mounted_is_a_file_init_secrets_makes(name):
    files = set(re.findall(r"file: \$\{RQP_SECRETS_DIR:-\./secrets\}/([\w.]+)", text(name)))
    assert files, f"{name} mounts no secret file"
    assert files <= init_secrets_files(), (
        f"{name} mounts files init-secrets.sh does not make: {files - init_secrets_files()}"
    )
    # and nothing secret as an environment value: passwords only as *_FILE paths
    keys = re.findall(r"(?m)^\s+([A-Z][A-Z_]*PASS[A-Z_]*):", text(name))
    assert all(k.endswith("_FILE") for k in keys), f"{name}: a password in an environment variable: {keys}"


@pytest.mark.parametrize(
    ("overlay", "base"), [("ha.yml", "scheduler-vm.yml"), ("ha-processor.yml", "processor-vm.yml")]
)
def test_every_role_finds_the_primary_through_the_sentinels_as_its_own_user(overlay, base):
    base_users = {
        name: re.search(r"RQP_REDIS_URL: rediss://([\w-]+)@", block).group(1)
        for name, block in services(base).items()
        if "RQP_REDIS_URL: rediss://" in block
    }
    base_users.setdefault("scheduler", "scheduler")  # the anchor's URL (x-rqp-env) in scheduler-vm.yml
    roles = {name: block for name, block in services(overlay).items() if name != "redis"}
    assert roles, overlay
    for name, block in roles.items():
        url = SENTINEL_URL.search(block)
        assert url, f"{overlay}: {name} does not use rediss+sentinel://...@${{REDIS_SENTINELS}}/rqp/0"
        expected = base_users.get(name, "processor" if name == "processor" else name)
        assert url.group(1) == expected, f"{overlay}: {name} logs in as {url.group(1)}, not {expected}"
        assert "sentinel_client_password" in block, f"{overlay}: {name} lacks the Sentinels' client password"
    assert "RQP_REDIS_SENTINEL_PASSWORD_FILE: /run/secrets/sentinel_client_password" in text(overlay)
    assert "RQP_REDIS_SENTINEL_USERNAME: client" in text(overlay)


def test_redis_and_sentinel_speak_only_tls_with_replication_over_tls():
    redis = services("ha.yml")["redis"]
    sentinel = services("sentinel.yml")["sentinel"]
    for block in (redis, sentinel):
        assert 'echo "port 0"' in block, "a plaintext port is open"
        assert 'echo "tls-replication yes"' in block
        assert "network_mode: host" in block  # the addresses Sentinel passes around are the VMs'
        assert "setpriv --reuid=10002" in block  # unprivileged, no capability kept
    assert "ports: !reset []" in redis, "ha.yml must drop scheduler-vm.yml's published port"
    assert 'echo "masteruser replica"' in redis and "aclfile /tmp/users.acl" in redis
    assert "redis_users_acl /run/secrets/redis_ha_users_acl" in redis  # the role users and the HA users
    assert 'echo "sentinel auth-user rqp sentinel"' in sentinel and 'echo "sentinel sentinel-user sentinel"' in sentinel
    assert "SENTINEL_QUORUM:-2" in sentinel


def test_the_ha_users_are_least_privilege():
    script = text("init-secrets.sh")
    replica = re.search(r'echo "user replica on [^"]*"', script).group(0)
    assert replica.endswith('-@all +psync +replconf +ping"')
    client = re.search(r'echo "user client on [^"]*"', script).group(0)
    allowed = set(re.findall(r"\+([\w|-]+)", client))
    assert allowed <= {"ping", "hello", "auth"} | {
        f"sentinel|{c}" for c in ("masters", "master", "slaves", "replicas", "sentinels", "get-master-addr-by-name")
    }, allowed
    assert 'echo "user default off' in script
