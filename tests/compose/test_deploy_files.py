"""The deployment files fit together (issue 16): the Compose files, compose/.env.example, the
cloud-init user-data and the ARM template name the same settings, secret files, queues, ports and
addresses. `make check-deploy` checks each file with its own tool (cloud-init schema, checkov);
these tests check what no single tool can: that they agree with each other.

The files are read as text (no YAML library in the test environment): the Compose files and the
cloud-init files follow one layout, which these helpers read and the tests pin down.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rqp.config import Settings
from rqp.redis_acl import ROLES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
TEMPLATE = COMPOSE / "azure" / "azuredeploy.json"
VMS = {"scheduler": "scheduler-vm", "processor": "processor-vm"}
# kek.pem and azure_conn: with Key Vault and managed identities they are empty stand-ins
STAND_INS = {"kek.pem", "azure_conn"}


# ---------------------------------------------------------------------------------------- readers
def env_example() -> dict[str, str]:
    out = {}
    for line in (COMPOSE / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def compose_secret_files(name: str) -> dict[str, str]:
    """Compose secret name -> file name under RQP_SECRETS_DIR, from the top-level `secrets:`."""
    text = (COMPOSE / f"{name}.yml").read_text()
    top = text[text.index("\nsecrets:\n") :]
    return dict(re.findall(r"\n  ([a-z_]+):(?:[^\n]*)\n    file: \$\{RQP_SECRETS_DIR:-\./secrets\}/([^\s]+)", top))


def compose_services(name: str) -> dict[str, str]:
    """Service name -> its block of text (services are indented two spaces under `services:`)."""
    text = (COMPOSE / f"{name}.yml").read_text()
    body = text[text.index("\nservices:\n") + len("\nservices:\n") : text.index("\nvolumes:\n")]
    parts = re.split(r"(?m)^  ([a-z-]+):\n", body)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def service_secrets(name: str) -> set[str]:
    """Every secret any service of the file mounts (the x-rqp anchor's for services merging it)."""
    text = (COMPOSE / f"{name}.yml").read_text()
    anchor = re.search(r"(?ms)^x-rqp: &rqp\n.*?^  secrets: \[([^\]]*)\]", text)
    assert anchor, f"{name}.yml: no secrets in the x-rqp anchor"
    used: set[str] = set()
    for block in compose_services(name).values():
        own = re.search(r"(?m)^    secrets: \[([^\]]*)\]", block)
        if own:
            used |= {s.strip() for s in own.group(1).split(",")}
        elif "<<: *rqp" in block:
            used |= {s.strip() for s in anchor.group(1).split(",")}
    return used


def vm_secret_files(vm: str) -> set[str]:
    name = VMS[vm]
    files = compose_secret_files(name)
    return {files[s] for s in service_secrets(name)}


def cloud_init(vm: str) -> str:
    return (COMPOSE / "cloud-init" / f"{VMS[vm]}.yaml").read_text()


def written_files(vm: str) -> dict[str, str]:
    """write_files: path -> content (the `content: |` block, its six-space indentation removed)."""
    out = {}
    text = cloud_init(vm)
    for m in re.finditer(
        r"(?m)^  - path: (\S+)\n(?:    [a-z]+: [^\n]*\n)*?    content: \|\n((?:      [^\n]*\n|\n)*)", text
    ):
        out[m.group(1)] = "".join(line[6:] + "\n" for line in m.group(2).splitlines())
    return out


def cloud_env(vm: str) -> dict[str, str]:
    env = {}
    for line in written_files(vm)["/opt/rqp/compose/.env"].splitlines():
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and " #" not in value, (
                f"{vm}: .env line {line!r} (no inline comments: Compose and systemd differ)"
            )
            env[key] = value
    return env


def template() -> dict:
    return json.loads(TEMPLATE.read_text())


def kv_secret(file: str) -> str:
    return "rqp-" + file.replace("_", "-").replace(".", "-")


# ---------------------------------------------------------------------------------------- Compose
def test_each_vm_file_has_its_own_project_name():
    names = {f: re.search(r"(?m)^name: (\S+)$", (COMPOSE / f"{f}.yml").read_text()).group(1) for f in VMS.values()}
    assert names == {"scheduler-vm": "rqp-scheduler-vm", "processor-vm": "rqp-processor-vm"}
    assert re.search(r"(?m)^name: rqp$", (COMPOSE / "all-in-one.yml").read_text())


def test_copying_env_example_keeps_the_required_settings_required():
    env = env_example()
    # the VM files refuse to start without these; .env.example must not fill them with examples
    for f, keys in {
        "scheduler-vm": ["RQP_BLOB_URL", "REDIS_BIND"],
        "processor-vm": ["RQP_BLOB_URL", "RQP_SCHEDULER_HOST"],
    }.items():
        text = (COMPOSE / f"{f}.yml").read_text()
        for key in keys:
            assert "${" + key + ":?" in text, f"{f}.yml does not require {key}"
            assert env[key] == "", f".env.example sets {key}={env[key]!r}: a copied .env would start a VM with it"


def test_env_example_documents_every_variable_and_pins_the_version():
    env = env_example()
    used = set()
    for f in ("all-in-one", "scheduler-vm", "processor-vm"):
        used |= set(re.findall(r"\$\{([A-Z_]+)", (COMPOSE / f"{f}.yml").read_text()))
    assert used - set(env) == set()
    version = re.search(r'(?m)^version = "(.+)"', (ROOT / "shared" / "pyproject.toml").read_text()).group(1)
    assert env["RQP_VERSION"] == version  # what `make images` / `docker save` carry
    for key in ("RQP_PROCESSOR_SCALE", "ROLES_ENV_FILE", "RQP_LEASE_SECONDS"):
        assert key in env


def test_every_rqp_role_reads_the_other_settings_from_env_file():
    for f in ("all-in-one", "scheduler-vm", "processor-vm"):
        text = (COMPOSE / f"{f}.yml").read_text()
        anchor = re.search(r"(?ms)^x-rqp: &rqp\n(.*?)\n\n", text).group(1)
        assert "env_file:\n    - path: ${ROLES_ENV_FILE:-.env}\n      required: false" in anchor, f


def test_processors_get_the_lease_the_scheduler_uses():
    text = (COMPOSE / "processor-vm.yml").read_text()
    assert "RQP_LEASE_SECONDS: ${RQP_LEASE_SECONDS:-30}" in text
    assert "RQP_LEASE_SECONDS: ${RQP_LEASE_SECONDS:-30}" in (COMPOSE / "scheduler-vm.yml").read_text()


def test_a_processor_vm_files_its_metrics_under_its_own_name():
    block = compose_services("processor-vm")["metrics-logger"]
    assert "processor-vm}" not in block  # no shared default name
    assert "/etc/hostname:/run/vm-hostname:ro" in block
    assert "--host-name" in block and "$${RQP_METRICS_HOST_NAME:-$$(cat /run/vm-hostname)}" in block


# ---------------------------------------------------------------------------------------- cloud-init
@pytest.mark.parametrize("vm", VMS)
def test_cloud_init_settings_are_documented_in_env_example(vm):
    documented = env_example()
    env = cloud_env(vm)
    assert set(env) - set(documented) == set()
    assert env["RQP_VERSION"] == documented["RQP_VERSION"]
    assert env["ROLES_ENV_FILE"] == ".env" and env["RQP_SECRETS_DIR"] == "./secrets"


@pytest.mark.parametrize("vm", VMS)
def test_cloud_init_starts_the_right_compose_file_once_every_secret_is_there(vm):
    files = written_files(vm)
    unit = files["/etc/systemd/system/rqp.service"]
    name = VMS[vm]
    assert f"docker compose -f {name}.yml" in unit and (COMPOSE / f"{name}.yml").exists()
    needed = set(re.findall(r"ConditionPathExists=/opt/rqp/compose/secrets/(\S+)", unit))
    assert needed == vm_secret_files(vm) | {".complete"}
    # the trigger is the marker written last, never a file copied first
    assert "PathExists=/opt/rqp/compose/secrets/.complete" in files["/etc/systemd/system/rqp.path"]
    assert "touch /opt/rqp/compose/secrets/.complete'" in cloud_init(vm)  # the documented copy
    assert 'touch "$d/.complete"' in files["/opt/rqp/fetch-secrets.sh"]  # the Key Vault fetch


@pytest.mark.parametrize("vm", VMS)
def test_cloud_init_logs_in_to_the_registry_before_pulling(vm):
    files = written_files(vm)
    unit = files["/etc/systemd/system/rqp.service"]
    login, pull = unit.index("ExecStartPre=/opt/rqp/registry-login.sh"), unit.index("pull --quiet")
    assert login < pull
    script = files["/opt/rqp/registry-login.sh"]
    assert "oauth2/exchange" in script and "docker login" in script and "password-stdin" in script


@pytest.mark.parametrize("vm", VMS)
def test_cloud_init_copy_procedure_and_key_vault_fetch_name_this_vms_files_only(vm):
    text = cloud_init(vm)
    copy = re.search(
        r"sudo tar -C compose/secrets --numeric-owner -cf - (.*?) \| ssh", text.replace("\\\n#", "")
    ).group(1)
    assert set(copy.split()) == vm_secret_files(vm)
    fetch = written_files(vm)["/opt/rqp/fetch-secrets.sh"]
    fetched = set()
    for group in re.findall(r"for f in ([^;]+); do fetch", fetch):
        fetched |= set(group.split())
    fetched |= set(re.findall(r"(?m)^fetch (\S+) 1000[12]", fetch))
    assert fetched == vm_secret_files(vm) - STAND_INS
    assert "redis_ca.key" not in text.replace("never the CA key", "")


def test_cloud_init_never_trusts_hostname_order():
    for vm in VMS:
        assert "hostname -I" not in cloud_init(vm)
    assert cloud_env("scheduler")["REDIS_BIND"] == "auto"
    assert "169.254.169.254/metadata/instance/network" in cloud_init("scheduler")


def test_processor_cloud_init_names_each_vm_and_scales():
    env = cloud_env("processor")
    assert env["RQP_METRICS_HOST_NAME"] == ""
    assert "RQP_METRICS_HOST_NAME=$(hostname)" in cloud_init("processor")
    unit = written_files("processor")["/etc/systemd/system/rqp.service"]
    assert "--scale processor=${RQP_PROCESSOR_SCALE}" in unit and "EnvironmentFile=/opt/rqp/compose/.env" in unit
    assert "--profile metrics" in unit


# ---------------------------------------------------------------------------------------- the ARM template
def replacements(param: str) -> list[str]:
    """The cloud-init lines the template rewrites in its customData parameter."""
    tpl = template()
    for r in tpl["resources"]:
        props = r.get("properties", {})
        os_profile = props.get("osProfile") or props.get("virtualMachineProfile", {}).get("osProfile")
        if os_profile and f"parameters('{param}')" in os_profile.get("customData", ""):
            expr = os_profile["customData"]
            return [m.replace("''", "'") for m in re.findall(r", '((?:[^']|'')*)', concat\(", expr)]
    raise AssertionError(f"no customData from {param}")


@pytest.mark.parametrize("vm", VMS)
def test_the_template_fills_in_lines_the_cloud_init_files_have(vm):
    text = cloud_init(vm)
    olds = replacements(f"{vm}CloudInit")
    assert len(olds) >= 10
    for old in olds:
        assert text.count(old + "\n") == 1 and text.count(old) == 1, (
            f"{VMS[vm]}.yaml does not have the line {old!r} once"
        )
    keys = {old.strip().partition("=")[0] for old in olds}
    must = {
        "RQP_IMAGE_PREFIX",
        "RQP_BLOB_URL",
        "RQP_QUEUE_URL",
        "RQP_KEY_VAULT_KEY_ID",
        "KEY_VAULT_NAME",
        "AZURE_CLIENT_ID",
    }
    assert must <= keys
    assert ("REDIS_BIND" in keys) == (vm == "scheduler") and ("RQP_SCHEDULER_HOST" in keys) == (vm == "processor")


def test_the_template_addresses_match_the_cloud_init_defaults():
    tpl = template()
    ip = tpl["parameters"]["schedulerPrivateIp"]["defaultValue"]
    assert cloud_env("processor")["RQP_SCHEDULER_HOST"] == ip
    assert ip in cloud_init("scheduler")  # the documented `init-secrets.sh --host` / az vm create
    assert tpl["variables"]["schedulerSubnetPrefix"].rsplit(".", 2)[0] == ip.rsplit(".", 2)[0]


def test_the_template_keeps_each_vms_secrets_to_itself():
    tpl = template()
    v = tpl["variables"]
    for vm in VMS:
        assert set(v[f"{vm}Secrets"]) == {kv_secret(f) for f in vm_secret_files(vm) - STAND_INS}, vm
    made = {
        r["name"].split("'/")[-1].rstrip("')]")
        for r in tpl["resources"]
        if r["type"] == "Microsoft.KeyVault/vaults/secrets"
    }
    assert made == set(v["schedulerSecrets"]) | set(v["processorSecrets"])
    assert "rqp-redis-processor-password" not in v["schedulerSecrets"]
    assert "rqp-redis-server-key" not in v["processorSecrets"] and "rqp-redis-users-acl" not in v["processorSecrets"]
    for r in tpl["resources"]:
        if r["type"] == "Microsoft.KeyVault/vaults/secrets" and "password" in r["name"]:
            param = r["properties"]["value"][len("[parameters('") : -len("')]")]
            assert tpl["parameters"][param]["type"] == "securestring"


def test_the_template_storage_matches_rqps_names():
    tpl = template()
    s = Settings()
    assert set(tpl["variables"]["queues"]) == {s.status_queue, s.events_queue, "rqp-metrics"}
    container = tpl["variables"]["blobContainer"]
    for vm in VMS:
        assert cloud_env(vm)["RQP_BLOB_URL"].endswith(f"/{container}")
        assert cloud_env(vm)["RQP_QUEUE_URL"].startswith("azure-queue://")
    sa = next(r for r in tpl["resources"] if r["type"] == "Microsoft.Storage/storageAccounts")["properties"]
    assert sa["allowSharedKeyAccess"] is False and sa["allowBlobPublicAccess"] is False
    assert sa["networkAcls"]["defaultAction"] == "Deny"


def test_the_template_lets_only_processors_reach_redis():
    tpl = template()
    v = tpl["variables"]
    redis = v["redisRule"]["properties"]
    assert redis["destinationPortRange"] == env_example()["REDIS_PORT"] == "6379"
    assert redis["sourceAddressPrefix"] == "[variables('processorSubnetPrefix')]" and redis["access"] == "Allow"
    assert v["denyRule"]["properties"]["access"] == "Deny" and v["denyRule"]["properties"]["priority"] == 4096
    nsgs = {r["name"]: r for r in tpl["resources"] if r["type"] == "Microsoft.Network/networkSecurityGroups"}
    sched = next(r for n, r in nsgs.items() if "scheduler" in n)["properties"]["securityRules"]
    assert "variables('redisRule')" in sched and "variables('denyRule')" in sched
    proc = next(r for n, r in nsgs.items() if "processors" in n)["properties"]["securityRules"]
    assert "redisRule" not in proc and "variables('denyRule')" in proc
    for rule in (v["sshRule"], v["redisRule"]):
        assert rule["properties"]["sourceAddressPrefix"] not in ("*", "Internet", "0.0.0.0/0")


def test_the_template_roles_are_least_privilege():
    tpl = template()
    roles = {
        r["properties"]["roleName"].split("'")[1].split(" (")[0]: r["properties"]["permissions"][0]["dataActions"]
        for r in tpl["resources"]
        if r["type"] == "Microsoft.Authorization/roleDefinitions"
    }
    unwrap, submit = roles["rqp KEK unwrap"], roles["rqp submitter"]
    assert any(a.endswith("/unwrap/action") for a in unwrap) and not any(
        "wrap/action" in a and "unwrap" not in a for a in unwrap
    )
    assert not any("sign" in a or "decrypt" in a for a in unwrap)
    assert any(a.endswith("keys/wrap/action") for a in submit) and any(a.endswith("keys/sign/action") for a in submit)
    assert not any("unwrap" in a or "decrypt" in a for a in submit)
    grants: dict[str, set[str]] = {}
    for r in tpl["resources"]:
        if r["type"] == "Microsoft.Authorization/roleAssignments":
            who = r["properties"]["principalId"]
            grants.setdefault(who, set()).add(r["properties"]["roleDefinitionId"])
    for who, got in grants.items():
        if "processorIdentityId" in who or "schedulerIdentityId" in who:
            assert not any("submitterRoleName" in g for g in got), who
        if "submitter" in who:
            assert not any("kekUnwrapRoleName" in g for g in got), who
    keys = {r["name"]: r["properties"] for r in tpl["resources"] if r["type"] == "Microsoft.KeyVault/vaults/keys"}
    kek = next(p for n, p in keys.items() if "kekName" in n)
    assert kek["kty"] == "RSA-HSM" and kek["keySize"] >= 3072 and set(kek["keyOps"]) == {"wrapKey", "unwrapKey"}
    signer = next(p for n, p in keys.items() if "signerName" in n)
    assert signer["curveName"] == "P-256" and set(signer["keyOps"]) == {"sign", "verify"}


def test_the_template_has_the_parts_the_issue_names():
    types = [r["type"] for r in template()["resources"]]
    for t in (
        "Microsoft.Network/virtualNetworks",
        "Microsoft.Compute/virtualMachines",
        "Microsoft.Compute/virtualMachineScaleSets",
        "Microsoft.Insights/autoscalesettings",
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "Microsoft.Storage/storageAccounts/queueServices/queues",
        "Microsoft.KeyVault/vaults",
    ):
        assert t in types, t
    assert types.count("Microsoft.Network/networkSecurityGroups") == 2
    assert types.count("Microsoft.ManagedIdentity/userAssignedIdentities") == 3


# ---------------------------------------------------------------------------------------- the console
def _own_secrets(name: str, service: str, block: str) -> set[str]:
    """The secrets one service mounts (its own list, or the x-rqp anchor's when it merges it)."""
    own = re.search(r"(?m)^    secrets: \[([^\]]*)\]", block)
    if own:
        return {x.strip() for x in own.group(1).split(",")}
    if "<<: *rqp" not in block:
        return set()
    text = (COMPOSE / f"{name}.yml").read_text()
    anchor = re.search(r"(?ms)^x-rqp: &rqp\n.*?^  secrets: \[([^\]]*)\]", text)
    return {x.strip() for x in anchor.group(1).split(",")} if anchor else set()


@pytest.mark.parametrize("name", ["all-in-one", "scheduler-vm"])
def test_the_scheduler_and_console_read_the_trusted_operators_file(name):
    """Signed control: the scheduler (which acts on requests) and the console (which shows their
    verification) mount trusted_operators.pem, a file named by RQP_TRUSTED_OPERATORS_FILE."""
    services = compose_services(name)
    assert compose_secret_files(name)["trusted_operators"] == "trusted_operators.pem"
    text = (COMPOSE / f"{name}.yml").read_text()
    assert "RQP_TRUSTED_OPERATORS_FILE: /run/secrets/trusted_operators" in text
    for svc in ("scheduler", "console"):
        assert "trusted_operators" in _own_secrets(name, svc, services[svc]), svc
    assert "RQP_OPERATOR_KEY" not in text.replace("RQP_OPERATOR_KEY_FILE: /run/secrets/operator_key", "")


def test_init_secrets_makes_the_operator_keys_and_the_trusted_operators_file():
    text = (COMPOSE / "init-secrets.sh").read_text()
    for made in ("operator.pem", "console_operator.pem", "trusted_operators.pem"):
        assert '[ -e "$DIR/$f" ]' in text and made in text.split("for f in kek.pem", 1)[1], made
    assert "rqp keygen --operator --out console_operator.pem" in text
    assert "rqp keygen --operator --out operator.pem" in text


@pytest.mark.parametrize("name", ["all-in-one", "scheduler-vm"])
def test_the_console_is_on_loopback_only_with_its_own_redis_users_and_no_kek(name):
    services = compose_services(name)
    assert "dashboard" not in services and "console" in services
    block = services["console"]
    # the hardening every rqp container has (x-rqp: read-only, no capability, no-new-privileges,
    # init, env_file), none of it overridden; the image's user is 10001 (docker/Dockerfile)
    assert "    <<: *rqp\n" in block
    for key in ("read_only", "cap_drop", "cap_add", "security_opt", "user", "env_file", "privileged", "network_mode"):
        assert f"\n    {key}:" not in block, key
    assert "image: ${RQP_IMAGE_PREFIX:-}rqp-console:${RQP_VERSION:-latest}" in block
    assert re.findall(r'(?m)^      - "([^"]+)"$', block) == ["127.0.0.1:${CONSOLE_PORT:-9180}:9180"]
    assert "RQP_CONSOLE_BIND: 0.0.0.0" in block and 'RQP_CONSOLE_PORT: "9180"' in block
    users = {r.user: r.password_file for r in ROLES}
    assert "dashboard" not in users
    assert "RQP_REDIS_URL: rediss://console@redis:6379/0" in block
    assert f"RQP_REDIS_PASSWORD_FILE: /run/secrets/{users['console']}" in block
    assert "RQP_CONSOLE_ACTIONS_REDIS_URL: rediss://console-actions@redis:6379/0" in block
    assert f"RQP_CONSOLE_ACTIONS_PASSWORD_FILE: /run/secrets/{users['console-actions']}" in block
    assert "RQP_CONSOLE_PASSWORD_FILE: /run/secrets/console_password" in block
    # no KEK: not mounted, and not named even if compose/.env names one for the other roles
    assert 'RQP_KEK_FILE: ""' in block and 'RQP_KEY_VAULT_KEY_ID: ""' in block
    own = set(re.search(r"(?m)^    secrets: \[([^\]]*)\]", block).group(1).replace(" ", "").split(","))
    assert own == {
        users["console"], users["console-actions"], "redis_ca", "console_password", "azure_conn",
        "console_operator_key", "trusted_operators",
    }  # fmt: skip
    files = compose_secret_files(name)
    # its own operator key signs its actions: a file, mounted into the console and no other service
    assert "RQP_CONSOLE_OPERATOR_KEY_FILE: /run/secrets/console_operator_key" in block
    assert files["console_operator_key"] == "console_operator.pem"
    others = {s for svc, b in compose_services(name).items() if svc != "console" for s in _own_secrets(name, svc, b)}
    assert "console_operator_key" not in others
    assert files["console_password"] == "console_password"
    assert {files[users["console"]], files[users["console-actions"]]} == {users["console"], users["console-actions"]}
    # the metrics logger's samples and the manifests, read-only
    assert re.search(r"(?m)^      - \S+:/data/blobs:ro$", block)


@pytest.mark.parametrize("name", ["all-in-one", "scheduler-vm", "processor-vm"])
def test_prometheus_metrics_are_on_the_project_network_only(name):
    """The scheduler and the processors serve /metrics inside the Compose network (expose), and
    no file publishes the port on the VM."""
    services = compose_services(name)
    roles = [s for s in ("scheduler", "processor") if s in services]
    assert roles, name
    for svc in roles:
        block = services[svc]
        assert '\n    expose: ["${RQP_METRICS_PORT:-9100}"]\n' in "\n" + block, (name, svc)
        assert "\n      RQP_METRICS_PORT: ${RQP_METRICS_PORT:-9100}\n" in block, (name, svc)
        assert "\n      RQP_METRICS_BIND: 0.0.0.0\n" in block, (name, svc)
        assert "\n    ports:" not in "\n" + block, (name, svc)


def _anchor(name: str) -> str:
    text = (COMPOSE / f"{name}.yml").read_text()
    found = re.search(r"(?ms)^x-rqp: &rqp\n(.*?)^\S", text)
    assert found, f"{name}.yml: no x-rqp anchor"
    return found.group(1)


@pytest.mark.parametrize("name", ["all-in-one", "scheduler-vm", "processor-vm"])
def test_script_running_roles_get_their_own_uid_a_scratch_tmpfs_and_only_the_caps_it_needs(name):
    """Issue 23: the scheduler and the processors (the roles that run workloads' scripts) start
    as root with SETUID/SETGID (and KILL, for the init to pass SIGTERM on) on top of
    ``cap_drop: [ALL]``, so docker/as-role.sh can run the role as 10001 and its scripts as
    RQP_SANDBOX_UID; their /tmp (the scratch root) is a size-limited, mode-1777 tmpfs. Every
    other rqp role keeps the anchor: uid 10001, no capability."""
    anchor = _anchor(name)
    assert "\n  cap_drop: [ALL]\n" in "\n" + anchor and "\n  security_opt: [no-new-privileges:true]\n" in anchor
    assert not re.search(r"(?m)^  (cap_add|user):", anchor), f"{name}: the x-rqp anchor gives every role more"
    services = compose_services(name)
    roles = [s for s in ("scheduler", "processor") if s in services]
    assert roles, name
    for svc in roles:
        block = "\n" + services[svc]
        assert "\n    <<: *rqp\n" in block, (name, svc)
        assert '\n    user: "0:0"\n' in block, (name, svc)
        caps = re.findall(r"(?m)^    cap_add: \[([^\]]*)\]$", block)
        assert caps and {c.strip() for c in caps[0].split(",")} == {"SETUID", "SETGID", "KILL"}, (name, svc, caps)
        tmpfs = re.findall(r'(?m)^    tmpfs: \["([^"]*)"\]$', block)
        assert tmpfs, (name, svc)
        path, _, options = tmpfs[0].partition(":")
        opts = options.split(",")
        assert path == "/tmp" and "mode=1777" in opts and any(o.startswith("size=") for o in opts), tmpfs
        assert {"noexec", "nosuid", "nodev"} <= set(opts), tmpfs
        assert "entrypoint:" not in block and "RQP_SANDBOX_UID: off" not in block, (name, svc)
    for svc, block in services.items():
        if svc not in roles and "<<: *rqp" in block:
            assert not re.search(r"(?m)^    (cap_add|user):", block), (name, svc)
