"""``rqp``'s argument parser: the options every command shares, each group's sub-commands, and
those installed role packages add through the ``rqp.commands`` entry points."""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import entry_points
from types import ModuleType

from .. import __version__

__all__ = ["COMMANDS_GROUP", "GROUP_COMMANDS", "HELP_ORDER", "build_parser", "groups"]

#: entry-point group through which installed role packages add ``rqp`` sub-commands (each entry
#: is a callable taking the sub-parsers); ``shared`` imports no role
COMMANDS_GROUP = "rqp.commands"

#: the groups of commands (modules of ``rqp.cli``), each registering its own on the sub-parsers,
#: and the commands each registers. ``rqp <command>`` imports only its command's group: the
#: others' imports (X.509 for redis-acl, the results' CSV and Parquet, ...) cost every command
#: ~25 ms of start-up -- ``rqp submit`` is on the clock of a workload's start
GROUP_COMMANDS: dict[str, tuple[str, ...]] = {
    "keys": ("keygen", "signer", "rotate-key"),
    "workloads": ("pack", "submit", "list"),
    "status": ("status",),
    "fleet": ("fleet",),
    "results": ("results",),
    "verify": ("verify", "proof", "verify-proof"),
    "events": ("events",),
    "control": ("pause", "resume", "cancel", "retry", "priority", "delete"),
    "audit": ("rejected", "audit"),
    "acl": ("redis-acl",),
}
_GROUP_OF = {command: group for group, commands in GROUP_COMMANDS.items() for command in commands}

#: the order ``rqp --help`` lists the commands in (and "invalid choice" names them in): the one it
#: has always had, whatever order the groups register them in; plugins' commands follow
HELP_ORDER = (
    "keygen",
    "pack",
    "signer",
    "submit",
    "status",
    "fleet",
    "list",
    "results",
    "verify",
    "proof",
    "verify-proof",
    "events",
    "retry",
    "rotate-key",
    "pause",
    "resume",
    "cancel",
    "priority",
    "delete",
    "rejected",
    "audit",
    "redis-acl",
)


def common_options() -> argparse.ArgumentParser:
    """The options of every command that reads the settings (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML settings file (default: RQP_CONFIG)")
    common.add_argument("--redis-url", help="default: RQP_REDIS_URL")
    common.add_argument("--blob-url", help="default: RQP_BLOB_URL")
    common.add_argument("--kek", help="private key-encryption key PEM (default: RQP_KEK_FILE)")
    common.add_argument("--trusted-signers", help="submitters' public keys (default: RQP_TRUSTED_SIGNERS_FILE)")
    return common


def groups(command: str | None = None) -> list[ModuleType]:
    """The group modules, imported: only ``command``'s when it is a built-in command, else all."""
    names = [_GROUP_OF[command]] if command in _GROUP_OF else list(GROUP_COMMANDS)
    return [importlib.import_module(f".{name}", __package__) for name in names]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """``rqp``'s parser; given the ``command`` about to be parsed (``argv[0]``), with only that
    built-in command's group -- its parsing, help and errors are the same -- else every command
    (``rqp --help``, a misspelt command, a plugin's)."""
    ap = argparse.ArgumentParser(prog="rqp", description="rqp: encrypted parallel batch processing on Redis and RQ")
    ap.add_argument("--version", action="version", version=f"rqp {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    common = common_options()
    for group in groups(command):
        group.register(sub, common)
    _in_help_order(sub)
    if command not in _GROUP_OF:
        _add_plugin_commands(sub)
    return ap


def _in_help_order(sub: argparse._SubParsersAction) -> None:
    """Sort the registered commands into ``HELP_ORDER`` (one not named there goes last)."""
    rank = {name: i for i, name in enumerate(HELP_ORDER)}
    sub._choices_actions.sort(key=lambda action: rank.get(action.dest, len(rank)))
    ordered = sorted(sub.choices.items(), key=lambda item: rank.get(item[0], len(rank)))
    sub.choices.clear()
    sub.choices.update(ordered)


def _add_plugin_commands(sub: argparse._SubParsersAction) -> None:
    names = set()
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            ep.load()(sub)
        except ImportError as exc:  # a half-installed plugin must not break the rest of the CLI
            print(f"rqp: warning: command {ep.name!r} unavailable ({exc})", file=sys.stderr)
            continue
        names.add(ep.name)
    if "metrics" not in names:
        p = sub.add_parser("metrics", help="VM metrics (needs the rqp-metrics-logger package)")
        p.set_defaults(func=lambda _a: _missing_metrics())


def _missing_metrics() -> int:
    print(
        "rqp: error: 'rqp metrics' needs the rqp-metrics-logger package; pip install ./metrics-logger", file=sys.stderr
    )
    return 2
