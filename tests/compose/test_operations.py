"""What an operator of the VM Compose files runs into (issue 24 items 23 and 27): the metrics
logger measures the VM's network, and the documented commands stop and remove what they start.

Read as text, like tests/compose/test_deploy_files.py (its readers are reused)."""

from __future__ import annotations

import re

import pytest

from tests.compose.test_deploy_files import COMPOSE, ROOT, compose_services

DOCS = [ROOT / "README.md", COMPOSE / "README.md", COMPOSE / "processor-vm.yml", COMPOSE / ".env.example"]


@pytest.mark.parametrize("name", ["scheduler-vm", "processor-vm"])
def test_the_vms_metrics_logger_runs_in_the_vms_network_namespace(name):
    """Inside its own container /proc/net/dev showed 14,358 bytes where the VM's NIC had moved
    161,804,254: the logger must share the VM's network namespace."""
    block = compose_services(name)["metrics-logger"]
    assert re.search(r"(?m)^    network_mode: host$", block), f"{name}: the metrics logger is not on the VM's network"
    assert not re.search(r"(?m)^    (ports|expose|networks):", block), (
        f"{name}: the metrics logger listens or joins a network"
    )
    url = re.search(r"(?m)^      RQP_REDIS_URL: (\S+)$", block)
    assert url, name
    # on the host network the Compose service name `redis` does not resolve: an address it publishes
    host = url.group(1).split("@")[1].split(":")[0]
    assert host == ("${REDIS_BIND}" if name == "scheduler-vm" else "${RQP_SCHEDULER_HOST}"), url.group(1)
    if name == "scheduler-vm":
        assert "0.0.0.0" in block and "127.0.0.1" in block, "REDIS_BIND=0.0.0.0 must become a connectable address"


def _commands(text: str) -> list[str]:
    """Each `docker compose ... processor-vm.yml ...` command, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return re.findall(r"docker compose -f \S*processor-vm\.yml[^\n`]*", joined)


def test_every_documented_processor_vm_command_carries_the_metrics_profile():
    """`down -v` without `--profile metrics` left the metrics logger, its network and volume:
    whatever the docs start with the profile they stop and remove with it."""
    commands = [c for doc in DOCS for c in _commands(doc.read_text())]
    # the VM walkthrough starts it with the metrics logger (an `up` without it, no logger, is fine)
    assert any(" up " in c and "--profile metrics" in c for c in commands), commands
    stops = [c for c in commands if re.search(r" (down|stop)\b", c)]
    assert any(" down -v" in c for c in stops), "no documented command removes a processor VM's project"
    assert all("--profile metrics" in c for c in stops), [c for c in stops if "--profile metrics" not in c]
    # or the profile in compose/.env, which every command reads
    env = (COMPOSE / ".env.example").read_text()
    assert re.search(r"(?m)^COMPOSE_PROFILES=$", env) and "COMPOSE_PROFILES=metrics" in env
