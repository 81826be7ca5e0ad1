"""Fixtures of the run's collaborators' tests: a processor to run the chunks in process, and
helpers that read back what the collaborators wrote (``world`` comes from tests/scheduler)."""

from __future__ import annotations

import pytest

from rqp.jobs import ChunkSpec, open_spec
from rqp.ledger import Ledger
from rqp.workload import Workload

#: record 5 always fails, every other one succeeds
FAILS_ON_FIVE = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"


@pytest.fixture
def proc(world):
    p = world.processor()
    yield p
    p.pool.close()


def specs(workload: Workload, led: Ledger) -> dict[str, ChunkSpec]:
    """Every spec Redis keeps, opened, by job id."""
    return {jid: open_spec(workload, jid, sealed) for jid, sealed in led.specs()}


def spec_records(workload: Workload, led: Ledger) -> list[int]:
    """The record ids of every queued spec, in order (a record queued twice appears twice)."""
    return sorted(rid for spec in specs(workload, led).values() for rid, _att in spec.records())
