"""A scheduler's start starts one script host, not two (issue 28 item 4): the host that probed
what the sandbox can apply (``sandbox.probe_host``) is kept as the first spare, so the first
workload's script check runs in it instead of waiting for a second interpreter to start and
confine itself (~50 ms of CPU; in ``rqp-scheduler run`` on the clock). It is checked against
``RQP_REQUIRE_SANDBOX`` as before, and a host that fails the check is not kept."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import pytest
from world import world  # noqa: F401 - fixture

from rqp import sandbox
from rqp.sandbox import SandboxError, ScriptHost
from rqp_scheduler.scheduler import Scheduler

SCRIPT = b"def process(r):\n    return r\n"


@pytest.fixture
def spawned(monkeypatch) -> list[subprocess.Popen]:
    """The process of every script host started from now on."""
    procs: list[subprocess.Popen] = []
    real = ScriptHost.spawn

    def spy(self: ScriptHost) -> None:
        real(self)
        assert self.proc is not None
        procs.append(self.proc)

    monkeypatch.setattr(ScriptHost, "spawn", spy)
    return procs


def test_the_probing_host_is_the_first_spare_and_the_first_check_runs_in_it(world, spawned):  # noqa: F811
    if not sandbox.SandboxConfig.from_settings(world.settings).enabled:
        pytest.skip("the sandbox is off here: no script hosts")
    sched = Scheduler(world.settings)
    try:
        assert len(spawned) == 1 and not sched.hosts.wants_spare  # probed, and kept warm
        assert sched.protections.describe()  # what the role logs at start, as before
        assert sandbox.check_script(sched.hosts, "w", SCRIPT) == {"parse": False}
        assert len(spawned) == 1  # no second interpreter for the check
        assert spawned[0].poll() is not None  # ended with its check: a host serves one workload
    finally:
        sched.hosts.close()


def test_a_host_that_fails_the_required_sandbox_is_not_kept(world, spawned, monkeypatch):  # noqa: F811
    config = sandbox.SandboxConfig.from_settings(replace(world.settings, require_sandbox=True))
    if not config.enabled:
        pytest.skip("the sandbox is off here: no script hosts")
    monkeypatch.setattr(sandbox.Protections, "missing", property(lambda _self: ["landlock (made up)"]))
    with pytest.raises(SandboxError, match="RQP_REQUIRE_SANDBOX=true refuses"):
        sandbox.probe_host(config)
    assert len(spawned) == 1 and spawned[0].poll() is not None  # ended, not left running as a spare
