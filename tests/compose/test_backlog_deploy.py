"""The scheduler VM turns the backlog metric on when configured (issue #27): its Compose file hands
the metrics logger the backlog settings from compose/.env (off by default) with a Redis user that
may read the workloads, and the ARM template's cloud-init for the scheduler VM names the processor
scale set and its region, so a deployed fleet autoscales on rqp/QueuedRecordsPerProcessor without
anyone editing the VM. The rendered configuration is Compose's own (``docker compose config``), not
a reading of the file's text: what a VM would run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rqp_metrics.settings import MetricsSettings
from tests.compose.test_deploy_files import (
    COMPOSE,
    cloud_env,
    compose_secret_files,
    replacements,
    template,
    written_files,
)

SCALE_SET = "/subscriptions/0000/resourceGroups/rqp/providers/Microsoft.Compute/virtualMachineScaleSets/rqp-proc"
#: Compose's own rendering of a file, as JSON
CONFIG = ("config", "--format", "json")
BACKLOG_SETTINGS = ("RQP_METRICS_BACKLOG_RESOURCE_ID", "RQP_METRICS_BACKLOG_REGION")


def _docker_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip(
            "the docker compose CLI plugin is needed to render the Compose file (tools/test-vms.sh needs it too)"
        )
    return [docker, "compose"]


def rendered_logger(tmp_path: Path, settings: dict[str, str]) -> dict:
    """The scheduler VM's metrics-logger service as Compose renders it with a .env of ``settings``
    (and the required ones), every secret file present and empty."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for file in compose_secret_files("scheduler-vm").values():
        (secrets / file).touch()
    env = {"REDIS_BIND": "10.40.1.4", "RQP_BLOB_URL": "azure-blob://acct/rqp", "RQP_SECRETS_DIR": str(secrets)}
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**env, **settings}.items()))
    out = subprocess.run(
        [*_docker_compose(), "-f", str(COMPOSE / "scheduler-vm.yml"), "--env-file", str(env_file), *CONFIG],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    return json.loads(out.stdout)["services"]["metrics-logger"]


def test_the_backlog_metric_is_off_unless_the_env_file_names_the_scale_set(tmp_path):
    logger = rendered_logger(tmp_path, {})
    env = logger["environment"]
    assert all(env[k] == "" for k in BACKLOG_SETTINGS), env
    assert not MetricsSettings.from_env(env).publishes_backlog


def test_the_scheduler_vm_publishes_the_backlog_when_configured(tmp_path):
    logger = rendered_logger(
        tmp_path, {"RQP_METRICS_BACKLOG_RESOURCE_ID": SCALE_SET, "RQP_METRICS_BACKLOG_REGION": "westeurope"}
    )
    env = logger["environment"]
    assert (env["RQP_METRICS_BACKLOG_RESOURCE_ID"], env["RQP_METRICS_BACKLOG_REGION"]) == (SCALE_SET, "westeurope")
    settings = MetricsSettings.from_env(env)
    assert settings.publishes_backlog and settings.backlog_resource_id == SCALE_SET
    # read as the console's read-only user where this VM publishes Redis (the logger's own user
    # may only append to its stream), with that user's password mounted
    assert settings.backlog_redis_url == "rediss://console@10.40.1.4:6379/0"
    assert settings.backlog_redis_password_file == "/run/secrets/redis_console_password"
    assert "redis_console_password" in {s["source"] for s in logger["secrets"]}
    # REDIS_BIND=0.0.0.0 is not an address to connect to: the entrypoint turns both URLs to
    # loopback (run here as the container would, with `env` in place of the logger)
    shell, flag, script = logger["entrypoint"]
    script = script.replace("$$", "$").replace("exec /opt/rqp/bin/rqp-metrics-logger", "exec env")
    ran = subprocess.run(
        [shell, flag, script], env={**env, "REDIS_BIND": "0.0.0.0"}, capture_output=True, text=True, check=True
    )
    seen = dict(line.partition("=")[::2] for line in ran.stdout.splitlines())
    assert seen["RQP_METRICS_BACKLOG_REDIS_URL"] == "rediss://console@127.0.0.1:6379/0", seen
    assert seen["RQP_REDIS_URL"] == "rediss://metrics-logger@127.0.0.1:6379/0", seen


def test_the_template_turns_the_backlog_metric_on_for_the_scheduler_vm():
    # the cloud-init .env has the settings empty (off), and the template fills them in with the
    # scale set the autoscale rules watch and its region -- the outputs an operator is told
    env = cloud_env("scheduler")
    assert all(env[k] == "" for k in BACKLOG_SETTINGS), env
    olds = replacements("schedulerCloudInit")
    for key in BACKLOG_SETTINGS:
        assert f"      {key}=" in olds, f"the template does not fill in {key} for the scheduler VM"
    tpl = template()
    [scheduler] = [r for r in tpl["resources"] if r["type"] == "Microsoft.Compute/virtualMachines"]
    data = scheduler["properties"]["osProfile"]["customData"]
    vmss_id = tpl["outputs"]["backlogMetricResourceId"]["value"].strip("[]")
    assert f"concat('      RQP_METRICS_BACKLOG_RESOURCE_ID=', {vmss_id})" in data
    region = tpl["outputs"]["backlogMetricRegion"]["value"].strip("[]")
    assert f"concat('      RQP_METRICS_BACKLOG_REGION=', {region})" in data
    # the processors never publish it: the scale sets' cloud-init is left alone
    assert "RQP_METRICS_BACKLOG" not in "".join(written_files("processor").values())
