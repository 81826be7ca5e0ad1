"""``rqp pack --replace`` of a workload that ended, through the real programs (issue #23 item 6):
the new version runs to done with its own results; while it runs, ``rqp results`` prints the
previous generation's (and says so on stderr); once it ends, only the new ones are left."""

from __future__ import annotations

from harness import stop_process_groups

GATED = """
import os, time

def process(record):
    # record 5 waits for the test to open the gate (a read-only path it was granted)
    while record["n"] == 5 and not os.path.exists({gate!r}):
        time.sleep(0.05)
    return record["n"] * 3
"""


def _superseded(cluster, wid: str) -> list[str]:
    d = cluster.root / "blobs" / "workloads" / wid / "superseded"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_a_workload_repacked_after_it_ended_runs_again_and_its_old_results_stay_readable_meanwhile(cluster):
    gate = cluster.root / "gate"
    gate.mkdir()
    cluster.env.update(RQP_SANDBOX_READ_PATHS=str(gate), RQP_CHUNK_SIZE="4", RQP_ADAPTIVE_CHUNKS="false")
    v1 = cluster.write_script("v1.py", "def process(record):\n    return record['n'] * 2\n")
    cluster.pack("yearly", cluster.write_data("v1.jsonl", [{"n": i} for i in range(8)]), v1)
    first = cluster.start_processor(workers=1)
    code, out = cluster.schedule("yearly")
    assert code == 0, out
    assert cluster.results("yearly") == {i: 2 * i for i in range(8)}
    # a processor that ran v1 keeps its script host warm under the id (processor/, reported):
    # v2 runs on a new one
    stop_process_groups([first])
    cluster.procs.remove(first)
    cluster.processors.remove(first)

    v2 = cluster.write_script("v2.py", GATED.format(gate=str(gate / "open")))
    data2 = cluster.write_data("v2.jsonl", [{"n": i} for i in range(12)])
    cp = cluster.rqp("pack", str(data2), str(v2), "--id", "yearly", "--replace")
    assert "the ended generation of yearly was superseded" in cp.stderr.decode()
    assert _superseded(cluster, "yearly") == [
        "inputs.bin", "key.json", "leaves.bin", "manifest.json", "results.enc", "summary.enc",
    ]  # fmt: skip

    cluster.start_processor(workers=1)
    sched = cluster.start_scheduler("yearly")

    def first_chunk_of_v2() -> bool:
        st = cluster.status("yearly")  # v1's state is "done" until the scheduler clears it
        return st["state"] == "running" and st["done"] >= 4

    cluster.wait_for(first_chunk_of_v2, 60, "the new generation's first chunk")
    during = cluster.rqp("results", "yearly")
    assert "has not finished; showing the previous generation" in during.stderr.decode()
    assert cluster.results("yearly") == {i: 2 * i for i in range(8)}  # v1's, whole and verified

    (gate / "open").touch()
    out, _ = sched.communicate(timeout=120)
    assert sched.returncode == 0, out.decode()
    after = cluster.rqp("results", "yearly")
    assert after.stderr.decode() == ""
    assert cluster.results("yearly") == {i: 3 * i for i in range(12)}
    assert _superseded(cluster, "yearly") == []


def test_shred_previous_needs_replace(cluster):
    data = cluster.write_data("d.jsonl", [{"n": 1}])
    script = cluster.write_script("s.py", "def process(record):\n    return 1\n")
    cp = cluster.rqp("pack", str(data), str(script), "--id", "lone", "--shred-previous", check=False)
    assert cp.returncode != 0
    assert "--shred-previous shreds the generation --replace supersedes; pass --replace too" in cp.stderr.decode()
