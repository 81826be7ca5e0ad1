"""The layers of the ``rqp`` wheel (issue #21): nothing in it imports a role, and no module imports
one above its layer, so a change to the CLI or the control plane can never be needed by the ledger,
the crypto or the storage it stands on. Checked on the source (every import, lazy ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "shared" / "src" / "rqp"
ROLES = ("rqp_scheduler", "rqp_processor", "rqp_console", "rqp_metrics")
#: the wheel's layers, lowest first: a module may import its own layer and those below
LAYERS = [
    {"errors", "pem", "identity", "merkle", "sentinel", "redis_auth", "entra_client", "surrogates"},
    {"config", "crypto", "storage", "keys", "signing", "azure"},
    {"ledger", "records", "jsonsafe", "sandbox", "outcome", "chunk_records"},
    {
        "workload",
        "jobs",
        "messages",
        "parts",
        "summary",
        "results",
        "status",
        "throughput",
        "results_root",
        "proof_check",
        "round_marker",
        "csv_layout",
        "metrics_http",
        "hardening",
        "vms",
    },
    {"connect", "backends", "oplog", "control", "rotate", "redis_acl", "verification", "results_signer"},
    {"client", "export_check"},
    {"cli", "__init__"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _imports(path: Path) -> set[str]:
    """The top-level ``rqp`` modules (or role packages) ``path`` imports."""
    rel = path.relative_to(SRC).with_suffix("").parts
    package = rel[:-1]  # the package a relative import starts from (an __init__ is its own package)
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # annotations only: no import at run time
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package)[: len(package) - (node.level - 1)] if node.level > 1 else list(package)
                parts = base + (node.module.split(".") if node.module else [])
                if parts:
                    found.add(parts[0])
                else:  # from . import x, y
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] in ("rqp", *ROLES):
                top = node.module.split(".")
                found.add(top[1] if top[0] == "rqp" and len(top) > 1 else top[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")
                if top[0] in ROLES:
                    found.add(top[0])
                elif top[0] == "rqp":
                    found.add(top[1] if len(top) > 1 else "__init__")
    return found


def _modules() -> list[tuple[str, Path]]:
    return [(p.relative_to(SRC).parts[0].removesuffix(".py"), p) for p in sorted(SRC.rglob("*.py"))]


def test_every_module_has_a_layer():
    assert {name for name, _ in _modules()} <= set(LEVEL), "a new module of rqp needs its place in LAYERS"


def test_the_wheel_never_imports_a_role():
    for _, path in _modules():
        roles = _imports(path) & set(ROLES)
        assert not roles, f"{path.relative_to(SRC)} imports {roles}: the shared wheel must not depend on a role"


def test_no_module_imports_one_above_its_layer():
    bad = []
    for name, path in _modules():
        for target in _imports(path) - {name}:
            if target in LEVEL and LEVEL[target] > LEVEL[name]:
                bad.append(f"{path.relative_to(SRC)} ({name}) imports {target}")
    assert not bad, "\n".join(bad)
