"""Redis rolled back mid-run (issue #26 item 3): a snapshot, then SIGKILL and a restart from it
1.5 s later -- what a failover to an asynchronous replica does. The commits made in those 1.5 s
are lost; the workload must end with every result exactly once, and without waiting for the
leases of the chunks whose commits were lost (the lease here is far longer than the bound)."""

from __future__ import annotations

import time

import redis
from harness import Cluster
from redis_server import RedisServer

SCRIPT = """
import time

def process(record):
    time.sleep(0.001)
    return record["n"] * 3
"""

N = 20_000
#: a lease far longer than the bound below: a chunk left to wait for its lease fails the test
LEASE_SECONDS = 90
#: how far back Redis goes: the snapshot is taken this long before the kill
ROLLBACK_SECONDS = 1.5
#: issue #26: the workload ends at most this much later than the work left takes
ALLOWED_LATE = 10.0
#: the work left is timed at the rate before the fault; on this shared, loaded machine a rate can
#: halve, so the bound allows that much slack on top of ``ALLOWED_LATE``
RATE_SLACK = 2.0


def _done(r: redis.Redis) -> int:
    return int(r.bitcount("rqp:w:rollback:done"))


def test_a_rollback_of_redis_mid_run_costs_no_lease_wait(tmp_path, kek):
    server = RedisServer().start()  # no AOF: a restart loads the last snapshot, nothing after it
    cluster = Cluster(
        tmp_path / "c",
        server.url,
        kek[0],
        extra_env={
            "RQP_MAX_ATTEMPTS": "10",
            "RQP_CHUNK_SIZE": "200",
            "RQP_ADAPTIVE_CHUNKS": "false",
            "RQP_LEASE_SECONDS": str(LEASE_SECONDS),
        },
    )
    timeline: list[tuple[str, float, int]] = []

    def mark(what: str, done: int) -> float:
        now = time.monotonic()
        timeline.append((what, now, done))
        return now

    try:
        data = cluster.write_data("rollback.jsonl", ({"n": i} for i in range(N)))
        cluster.pack("rollback", data, cluster.write_script("rollback.py", SCRIPT))
        cluster.start_processor(workers=2)
        sched = cluster.start_scheduler("rollback")
        cluster.wait_for(lambda: _done(cluster.r) > 0 or sched.poll() is not None, 60, "first results")
        t_first = mark("first results", _done(cluster.r))
        cluster.wait_for(lambda: _done(cluster.r) >= N // 3 or sched.poll() is not None, 60, "a third done")
        assert sched.poll() is None, "the workload ended before the fault"
        cluster.r.save()  # the snapshot the restart goes back to
        at_snapshot = _done(cluster.r)
        t_snap = mark("snapshot (SAVE)", at_snapshot)
        rate = (at_snapshot - timeline[0][2]) / (t_snap - t_first)
        cluster.wait_for(
            lambda: time.monotonic() >= t_snap + ROLLBACK_SECONDS and _done(cluster.r) > at_snapshot,
            30,
            "commits after the snapshot",
        )
        before_kill = _done(cluster.r)
        mark("SIGKILL", before_kill)
        server.stop(kill=True)
        server.start()  # the same directory: it loads the snapshot
        cluster.r = redis.Redis.from_url(server.url)
        after = _done(cluster.r)
        t_restart = mark("restarted from the snapshot", after)
        pending = cluster.r.zrange("rqp:w:rollback:pending", 0, -1, withscores=True)
        leased = sorted(j.decode().rsplit("-", 2)[1] for j, score in pending if score != float("inf"))
        assert after < before_kill, f"nothing was rolled back ({after} done after the restart, {before_kill} before)"
        cluster.wait_for(lambda: _done(cluster.r) > after or sched.poll() is not None, 30, "work resuming")
        mark("work resumed", _done(cluster.r))
        cluster.wait_for(lambda: sched.poll() is not None, LEASE_SECONDS, "the workload to end")
        t_end = mark("workload ended", _done(cluster.r))
        out, _ = sched.communicate(timeout=30)
        log = out.decode()
        left = (N - after) / rate
        print(f"\nrollback timeline ({N} records, 1 ms each, {rate:.0f} records/s before the fault):")
        for what, at, done in timeline:
            print(f"  {at - t_snap:+7.2f} s  {what:<30} {done:>6} done")
        print(
            f"  lost by the rollback: {before_kill - after} records' commits; work left after the restart: "
            f"{N - after} records, {left:.1f} s at the rate before; the workload ended {t_end - t_restart:.1f} s "
            f"after the restart ({t_end - t_restart - left:+.1f} s over the work left)"
        )
        print(f"  leased in the snapshot (their lease is {LEASE_SECONDS} s): {' '.join(leased) or 'none'}")
        for line in log.splitlines():
            if "re-queued" in line or "lost recent writes" in line:
                print("  scheduler:", line.split(" WARNING ")[-1][:160])
        handed = [ln for ln in cluster.logs().splitlines() if "handed back" in ln]
        for line in handed:
            print("  processor:", line.split(" WARNING ")[-1][:160])
        assert sched.returncode == 0, log[-3000:] + cluster.logs()
        assert "lost recent writes" in log, "the scheduler did not notice the rollback:\n" + log[-3000:]
        results = cluster.results("rollback")  # raises when a record appears twice
        assert sorted(results) == list(range(N))
        assert all(results[i] == 3 * i for i in range(N))
        st = cluster.status("rollback")
        assert (st["state"], st["done"], st["failed"], st["total"]) == ("done", N, 0, N), st
        bound = left * RATE_SLACK + ALLOWED_LATE
        assert t_end - t_restart <= bound, (
            f"the workload ended {t_end - t_restart:.1f} s after the restart; the work left takes {left:.1f} s "
            f"(bound {bound:.1f} s): chunks waited for their lease"
        )
    finally:
        cluster.stop()
        server.stop()
