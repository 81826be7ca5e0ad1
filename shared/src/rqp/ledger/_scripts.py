"""The Lua scripts, each in its own ``lua/*.lua`` file with its KEYS and ARGV documented there,
registered once per client (EVALSHA after the first call)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import redis

__all__ = ["Scripts", "source"]

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
