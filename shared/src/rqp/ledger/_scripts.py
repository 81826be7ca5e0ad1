"""The Lua scripts, each in its own ``lua/*.lua`` file with its KEYS and ARGV documented there,
registered once per client (EVALSHA after the first call)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.client import Pipeline

__all__ = ["Scripts", "run_with", "source"]

_HELPERS = "_helpers.lua"
#: script -> whether it needs the shared helpers
_SCRIPTS = {
    "start": True,
    "commit": True,
    "reclaim": False,
    "renew_lock": False,
    "post_control": False,
}


@cache
def source(name: str) -> str:
    """The script's text, helpers prepended where it uses them."""
    lua = resources.files(__package__).joinpath("lua")
    body = lua.joinpath(f"{name}.lua").read_text()
    return (lua.joinpath(_HELPERS).read_text() + "\n" + body) if _SCRIPTS[name] else body


class Scripts:
    def __init__(self, client: redis.Redis) -> None:
        self.start: Any = client.register_script(source("start"))
        self.commit: Any = client.register_script(source("commit"))
        self.reclaim: Any = client.register_script(source("reclaim"))
        self.renew_lock: Any = client.register_script(source("renew_lock"))
        self.post_control: Any = client.register_script(source("post_control"))


def run_with(
    client: redis.Redis, script: Any, keys: list[Any], args: list[Any], then: Callable[[Pipeline], Any]
) -> list[Any]:
    """``script`` (EVALSHA) and the commands ``then`` adds, in one round trip. redis-py's own
    way (``script(keys, args, client=pipe)``) sends SCRIPT EXISTS before every such pipeline: one
    more round trip per chunk a worker starts. A Redis that lacks the script (restarted, failed
    over, SCRIPT FLUSH) answers NOSCRIPT without running it: the script is loaded and the lot sent
    again -- so ``then`` must only read."""
    for again in (False, True):
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        then(pipe)
        try:
            return pipe.execute()
        except redis.exceptions.NoScriptError:
            if again:
                raise
            script.sha = client.script_load(script.script)
    raise AssertionError("unreachable")  # pragma: no cover
