"""Which states end a wait: the known ended ones and any a newer scheduler adds; never one that
is under way, nor a workload Redis has no state for yet."""

from __future__ import annotations

import pytest

from rqp.client._status import is_ended


@pytest.mark.parametrize("state", ["done", "failed", "cancelled", "refused", "some-future-state"])
def test_ended(state):
    assert is_ended(state)


@pytest.mark.parametrize("state", ["packed", "submitted", "running", "paused", "cancelling", "consolidating", "?"])
def test_under_way(state):
    assert not is_ended(state)
