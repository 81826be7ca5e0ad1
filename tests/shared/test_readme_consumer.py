"""The README's status-queue consumer runs as printed (#24 item 10: the documented call once
lacked its ``queue`` argument and promised a list where an ``Envelope`` comes back)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from world import cli_env, proc, world  # noqa: F401 - fixtures

README = Path(__file__).resolve().parents[2] / "README.md"


def _consumer_snippet() -> str:
    text = README.read_text()
    section = text[text.index("**Consuming the status queue downstream.**") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's consumer example is gone"
    return match.group(1)


def test_the_readme_consumer_reads_every_status_record(world, proc, cli_env):  # noqa: F811
    wid = world.pack("consumed", [{"n": i} for i in range(12)])
    world.run_to_end(world.run(wid), proc)
    seen: list[dict[str, Any]] = []
    code = _consumer_snippet()
    assert "rqp:mq:rqp-status" in README.read_text()  # the stream is named for Redis users
    for _ in range(5):  # a few passes: each takes at most 32 messages
        exec(code, {"handle": seen.append})
    mine = [s for s in seen if s.get("workload") == wid]
    assert sorted(s["id"] for s in mine) == list(range(12))
    assert {s["state"] for s in mine} == {"done"}
