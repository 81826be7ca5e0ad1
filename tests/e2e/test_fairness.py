"""Several workloads on one fleet, through the real programs: a small workload submitted while a
large one runs is not starved, and priorities order who gets the workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from harness import bin_path

#: ~2 ms per record: a 3,000-record workload keeps 2 workers busy for about 3 s
SCRIPT = "import time\n\ndef process(r):\n    time.sleep(0.002)\n    return r['n']\n"
ENV = {"RQP_CHUNK_SIZE": "20", "RQP_ADAPTIVE_CHUNKS": "false"}


def _serve(cluster) -> subprocess.Popen:
    with open(cluster.root / "scheduler.log", "wb") as log:
        p = subprocess.Popen(
            [bin_path("rqp-scheduler"), "serve"],
            env={**cluster.env, **ENV},
            cwd=cluster.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cluster.procs.append(p)
    return p


def _workload(cluster, wid: str, n: int) -> str:
    data = cluster.write_data(f"{wid}.jsonl", [{"n": i} for i in range(n)])
    return cluster.pack(wid, data, cluster.write_script(f"{wid}.py", SCRIPT))


def _times(cluster, wid: str) -> tuple[float, float]:
    st = cluster.status(wid)
    return st["started_at"], st["finished_at"]


def _state(cluster, wid: str) -> dict:
    """`rqp status --json`, or {} while no scheduler has taken the workload yet."""
    cp = cluster.rqp("status", wid, "--json", check=False)
    return json.loads(cp.stdout) if cp.stdout.strip() else {}


def _done(cluster, *wids: str):
    return lambda: all(_state(cluster, w).get("state") == "done" for w in wids)


def test_a_small_workload_is_not_starved_by_a_large_one(cluster):
    big, small = _workload(cluster, "big", 3000), _workload(cluster, "small", 100)
    cluster.start_processor(2)
    serve = _serve(cluster)
    try:
        cluster.rqp("submit", big)
        cluster.wait_for(lambda: _state(cluster, big).get("done", 0) >= 300, 60, "the large workload to be under way")
        cluster.rqp("submit", small)
        cluster.wait_for(_done(cluster, big, small), 120, "both workloads to finish")
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(30)
    (b0, b1), (s0, s1) = _times(cluster, big), _times(cluster, small)
    print(
        f"\nfairness: large 3,000 records {b1 - b0:.2f}s; small 100 records submitted at +{s0 - b0:.2f}s, took {s1 - s0:.2f}s"
    )
    assert s1 < b1, "the small workload finished after the large one"
    assert s1 - s0 < 0.4 * (b1 - b0), f"the small workload took {s1 - s0:.2f}s of the large one's {b1 - b0:.2f}s"
    assert len(cluster.results(small)) == 100 and len(cluster.results(big)) == 3000


def test_priorities_order_who_gets_the_workers(cluster):
    normal, high, low = (
        # large enough that the normal workload is still running well after the urgent one's
        # start-up (a new workload's open and first chunk): its end is what is compared
        _workload(cluster, "normal", 8000),
        _workload(cluster, "urgent", 200),
        _workload(cluster, "later", 200),
    )
    cluster.rqp("priority", high, "high")
    cluster.rqp("priority", low, "low")
    cluster.start_processor(2)
    serve = _serve(cluster)
    try:
        cluster.rqp("submit", normal)
        cluster.wait_for(
            lambda: cluster.status(normal).get("done", 0) >= 300, 60, "the normal workload to be under way"
        )
        t = time.time()
        cluster.rqp("submit", low)
        cluster.rqp("submit", high)
        cluster.wait_for(_done(cluster, normal, high, low), 120, "every workload to finish")
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(30)
    ends = {w: _times(cluster, w)[1] - t for w in (normal, high, low)}
    print("\npriorities: finished after the late submissions: " + ", ".join(f"{w} +{s:.2f}s" for w, s in ends.items()))
    assert ends[high] < ends[normal] < ends[low], ends
    audit = [line for line in cluster.rqp("audit").stdout.decode().splitlines()]
    assert any("priority high" in line and high in line for line in audit)
