"""Which states end a wait: the known ended ones (and ``refused``); never one that is under way,
a workload Redis has no state for yet, nor a state this version does not know (Redis's state is
plain: a Redis writer's made-up one must not end a wait)."""

from __future__ import annotations

import pytest

from rqp.client._status import is_ended


@pytest.mark.parametrize("state", ["done", "failed", "cancelled", "refused"])
def test_ended(state):
    assert is_ended(state)


@pytest.mark.parametrize(
    "state", ["packed", "submitted", "running", "paused", "cancelling", "consolidating", "?", "zzz"]
)
def test_under_way(state):
    assert not is_ended(state)


def test_importing_rqp_loads_no_client_until_it_is_used():
    """A script's ``from rqp import PermanentError`` in its confined process must not load Redis,
    RQ or the blob stores; ``rqp.Client`` loads them when first named."""
    import subprocess
    import sys

    probe = (
        "import sys, rqp\n"
        "assert 'rqp.client' not in sys.modules and 'redis' not in sys.modules, sorted(sys.modules)\n"
        "rqp.Client\n"
        "assert 'rqp.client' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
