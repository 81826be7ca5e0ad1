"""The shape of ``rqp.cli``: each group registers its commands and ``rqp --help`` still lists them
in the order it always had; one time formatter; one place mapping failures to exit codes; no
argparse in the domain modules and no module below the CLI importing it."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import redis

from rqp.cli import build_parser
from rqp.cli.exits import INTERRUPTED, run
from rqp.cli.formatting import when
from rqp.cli.parser import GROUP_COMMANDS, HELP_ORDER, common_options, groups
from rqp.errors import IntegrityError, RedisUnavailableError

RQP = Path(__file__).resolve().parents[2] / "shared" / "src" / "rqp"


def _listed(help_text: str) -> list[str]:
    """The command names of ``rqp --help``'s COMMAND section, in order."""
    section = help_text.split("  COMMAND\n", 1)[1].split("\n\n", 1)[0]
    return [m.group(1) for m in re.finditer(r"^    (\S+)", section, re.MULTILINE)]


def test_every_group_command_is_listed_in_the_help_order():
    sub = argparse.ArgumentParser().add_subparsers()
    common = common_options()
    for group in groups():
        group.register(sub, common)
    assert sorted(sub.choices) == sorted(HELP_ORDER)  # a new command must be given its place
    listed = _listed(build_parser().format_help())
    assert listed[: len(HELP_ORDER)] == list(HELP_ORDER)
    assert "metrics" in listed[len(HELP_ORDER) :]  # plugins (or the stand-in) after the built-ins


def test_each_group_registers_exactly_the_commands_it_is_listed_with():
    # ``rqp <command>`` builds its parser from that command's group alone: a command registered
    # by another group than GROUP_COMMANDS says would be missing from it
    for group in groups():
        sub = argparse.ArgumentParser().add_subparsers()
        group.register(sub, common_options())
        assert tuple(sub.choices) == GROUP_COMMANDS[group.__name__.rsplit(".", 1)[1]], group.__name__


def test_a_command_imports_only_its_own_group():
    # issue 28 item 4: `rqp submit` is on the clock of a workload's start; every group's imports
    # (X.509, CSV, Parquet, ...) cost it ~25 ms
    code = (
        "import sys\n"
        "from rqp.cli import build_parser\n"
        "ns = build_parser('submit').parse_args(['submit', 'w1'])\n"
        "print(ns.func.__module__, sorted(m for m in sys.modules if m.startswith('rqp.cli.')),\n"
        "      [m for m in ('rq', 'tenacity', 'cryptography.x509') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("rqp.cli.workloads "), out
    assert out.rstrip().endswith(" []"), out  # neither RQ (~15 ms) nor tenacity (~10) nor X.509: submit uses none
    for other in ("acl", "results", "verify", "events", "control", "fleet", "keys", "audit"):
        assert f"'rqp.cli.{other}'" not in out, out
    # every command still parses as before from the full parser (help, a misspelt command)
    full = build_parser()
    assert full.parse_args(["submit", "w1"]).func is build_parser("submit").parse_args(["submit", "w1"]).func


def test_one_time_formatter_two_spellings_of_the_same_instant():
    at = 1_800_000_000.123
    full = when(at)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.123[+-]\d\d:\d\d", full), full
    assert abs(datetime.fromisoformat(full).timestamp() - at) < 0.001
    assert when(at, short=True) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    assert when(None) == "-"


def _raising(exc: BaseException) -> argparse.Namespace:
    def func(_args: argparse.Namespace) -> int:
        raise exc

    return argparse.Namespace(func=func, cmd="status")


def test_failures_map_to_one_line_and_the_errors_exit_code(capsys):
    assert run(_raising(IntegrityError("results of workload w1 were replaced; re-run it"))) == IntegrityError.exit_code
    assert capsys.readouterr().err == "rqp: error: results of workload w1 were replaced; re-run it\n"
    code = run(_raising(redis.ConnectionError("Connection reset by peer.\nmore")))
    assert code == RedisUnavailableError.exit_code
    assert capsys.readouterr().err == (
        "rqp: error: lost Redis while running 'rqp status' (Connection reset by peer); check that it is up and retry\n"
    )
    assert run(_raising(KeyboardInterrupt())) == INTERRUPTED == 130
    assert run(_raising(BrokenPipeError())) == 0
    assert run(argparse.Namespace(func=lambda _a: None, cmd="status")) == 0


def _imports(path: Path) -> set[str]:
    """The absolute names ``path`` imports (relative ones resolved against the rqp package)."""
    package = ["rqp", *path.relative_to(RQP).parent.parts]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def test_domain_modules_hold_no_argparse_and_nothing_below_imports_the_cli():
    for domain in ("rotate.py", "redis_acl.py"):
        assert "argparse" not in _imports(RQP / domain), domain
    below = [p for p in RQP.rglob("*.py") if "cli" not in p.relative_to(RQP).parts]
    assert below
    for path in below:
        assert not any(n == "rqp.cli" or n.startswith("rqp.cli.") for n in _imports(path)), path


@pytest.mark.parametrize("module", sorted(p.stem for p in (RQP / "cli").glob("*.py") if p.stem != "__main__"))
def test_each_cli_module_imports_on_its_own(module):
    """No import loop: whichever module a process imports first, it loads."""
    name = "rqp.cli" if module == "__init__" else f"rqp.cli.{module}"
    cp = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, check=False)
    assert cp.returncode == 0, cp.stderr
