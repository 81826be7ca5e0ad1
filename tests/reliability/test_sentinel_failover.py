"""A Redis failover under a running workload, on one host: a real primary, a replica and three
real Sentinels; a serving scheduler and two processors that know only the Sentinels. The primary is
SIGKILLed mid-run, Sentinel promotes the replica, and the work resumes by itself -- every role
reconnects to the new primary -- with every result exactly once. The time from the fault to work
resuming is printed (``-s``) and kept in the test's directory (``failover-timeline.txt``)."""

from __future__ import annotations

import subprocess
import time

import pytest
from harness import Cluster, bin_path
from sentinel_group import SentinelGroup, wait_until

from rqp.config import Settings
from rqp.connect import connect_redis

N = 3000
SCRIPT = """
import time

def process(record):
    time.sleep(0.003)
    return record["n"] * 3
"""


@pytest.fixture
def group():
    g = SentinelGroup().start()
    yield g
    g.stop()


def test_the_primary_killed_mid_run_the_replica_promoted_and_the_work_resumes_by_itself(group, tmp_path, kek):
    cluster = Cluster(
        tmp_path / "cluster",
        group.primary.url,
        kek[0],
        extra_env={
            "RQP_REDIS_URL": group.url,  # every role finds the primary through the Sentinels
            "RQP_CHUNK_SIZE": "50",
            "RQP_ADAPTIVE_CHUNKS": "false",
            "RQP_MAX_ATTEMPTS": "10",
        },
    )
    cluster.r.close()
    cluster.r = connect_redis(Settings.from_mapping({"redis_url": group.url, "allow_insecure_redis": True}))
    try:
        data = cluster.write_data("ha.jsonl", ({"n": i} for i in range(N)))
        cluster.pack("ha", data, cluster.write_script("ha.py", SCRIPT))
        log = open(cluster.root / "scheduler.log", "wb")  # noqa: SIM115 - the child keeps its own descriptor
        sched = subprocess.Popen(
            [bin_path("rqp-scheduler"), "serve"],
            env=cluster.env,
            cwd=cluster.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        cluster.procs.append(sched)
        cluster.start_processor(2)
        cluster.start_processor(2)
        cluster.rqp("submit", "ha")

        def done() -> int:
            return int(cluster.r.bitcount("rqp:w:ha:done"))

        wait_until(lambda: done() >= N // 4, 60, "a quarter of the records before the fault")
        before = done()
        fault = group.kill_primary()
        group.wait_failover()
        promoted = time.monotonic()
        after_promotion = done()  # what the replica had: the last writes may be lost (asynchronous)
        wait_until(lambda: done() > after_promotion, 60, "work to resume on the promoted replica")
        resumed = time.monotonic()
        try:
            wait_until(lambda: done() == N, 90, "every record done")
        except AssertionError as exc:  # say where the rest is: in flight, queued, or nowhere
            pending = cluster.r.zrange("rqp:w:ha:pending", 0, -1, withscores=True)
            log_tail = (cluster.root / "scheduler.log").read_text(errors="replace")[-3000:]
            raise AssertionError(
                f"{exc}: {done()} of {N} done; pending {pending[:20]}; scheduler log:\n{log_tail}"
            ) from None
        finished = time.monotonic()

        timeline = (
            f"primary SIGKILLed with {before} of {N} done; replica promoted after {promoted - fault:.1f}s "
            f"({after_promotion} done on it); work resumed {resumed - fault:.1f}s after the fault; "
            f"all done {finished - fault:.1f}s after it"
        )
        print(timeline)
        (tmp_path / "failover-timeline.txt").write_text(timeline + "\n")
        assert sched.poll() is None, (cluster.root / "scheduler.log").read_text()[-3000:]
        assert resumed - fault < 30, timeline

        results = cluster.results("ha")  # raises if a record appears twice
        assert sorted(results) == list(range(N))
        assert all(v == 3 * k for k, v in results.items())
        wait_until(lambda: cluster.status("ha")["state"] == "done", 30, "the workload to end as done")
        st = cluster.status("ha")
        assert (st["done"], st["failed"], st["total"]) == (N, 0, N), st
    finally:
        cluster.stop()
