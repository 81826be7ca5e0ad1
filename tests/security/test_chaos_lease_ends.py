"""tools/chaos.py's chunk family ends a chunk's lease until its reclaim gives up.

The family puts junk in a chunk's value and ends its lease, then ends it again for each
generation the reclaim queues. It used to stop after two ends, taking the second for the chunk's
last attempt; but the first ``FREE_LOST_RERUNS`` re-runs after a lost worker spend no attempt, so
the reclaim never gave up, never read the junk, and the run ended as a stall instead of the
refusal the family exists to check.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rqp_scheduler.run.reclaim import FREE_LOST_RERUNS

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
chaos = importlib.import_module("chaos")

#: a chunk-family run whose junk chunk has its lease ended (found by running the family)
SEED = 116
PER_RUN = 4


@pytest.fixture(scope="module")
def lab(redis_server: Any, tmp_path_factory: Any) -> Iterator[Any]:
    lab = chaos.Lab(tmp_path_factory.mktemp("chaos-leases"), redis_server.url)
    yield lab
    lab.close()


def test_the_lease_ends_past_the_free_reruns_and_every_attempt(lab: Any) -> None:
    out = chaos.run_case(lab, "chunk", SEED, PER_RUN)
    generations: dict[str, set[int]] = {}
    for step in out.mutations:
        for chunk, gen in re.findall(r"rqp-[\w-]+?-(c\d+)-(\d+)", step):
            generations.setdefault(chunk, set()).add(int(gen))
    assert generations, out.describe()
    want = FREE_LOST_RERUNS + lab.settings.max_attempts
    assert max(len(g) for g in generations.values()) == want, out.describe()
    # the reclaim that gave up read the junk value: refused loudly, not a stalled victim
    assert out.kind == "refused" and "written behind rqp's back" in out.why, out.describe()
