"""Nothing of a workload is left on disk when its worker is SIGKILLed mid-record (issue 23, item 3).

The review's attack: a script that writes its records' plaintext to its scratch directory, in
workers the OOM killer then SIGKILLs -- 50 files of plaintext stayed in 3 ``rqp-script-*``
directories. Now the supervisor removes what a dead worker's hosts left when it reaps the worker,
and every role removes what dead processes left when it starts.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from rqp.sandbox import remove_leftovers

SCRIBBLER = """
import os, time

def process(record):
    with open(os.path.join(os.environ["TMPDIR"], "record-%d.txt" % record["n"]), "w") as fh:
        fh.write(record["text"])  # the record's plaintext, on disk
    if record["n"] == 3:
        time.sleep(120)  # the worker is SIGKILLed while this record is in hand
    return record["n"]
"""


def _files_with(root: Path, marker: str) -> list[Path]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath, name)
            try:
                if marker.encode() in p.read_bytes():
                    out.append(p)
            except OSError:
                pass
    return out


def test_a_sigkilled_worker_leaves_no_file_of_its_workload(cluster, tmp_path):
    marker = f"PLAINTEXT{secrets.token_hex(6)}"
    run_tmp = tmp_path / "run-tmp"
    run_tmp.mkdir()
    cluster.env.update(TMPDIR=str(run_tmp), RQP_CHUNK_SIZE="10", RQP_ADAPTIVE_CHUNKS="false")
    records = [{"n": i, "text": f"{marker}-{i}"} for i in range(10)]
    cluster.pack("scribbler", cluster.write_data("s.jsonl", records), cluster.write_script("s.py", SCRIBBLER))
    sup = cluster.start_processor(workers=1)
    cluster.start_scheduler("scribbler")
    # the worker is in record 3, with records 0-3 written to its scratch directory
    cluster.wait_for(lambda: len(_files_with(run_tmp, marker)) >= 4, 60, "the script to write its records to disk")
    [worker] = cluster.worker_pids()
    assert any(d.name.startswith(f"rqp-script-{worker}-") for d in run_tmp.iterdir())
    os.kill(worker, signal.SIGKILL)
    cluster.wait_for(
        lambda: cluster.worker_pids() and cluster.worker_pids() != [worker], 60, "the supervisor to replace the worker"
    )
    assert sup.poll() is None
    # nothing of the workload anywhere under the temporary directory (the new worker's hosts
    # may start again on the chunk, so wait until the dead worker's are gone, then check all)
    cluster.wait_for(
        lambda: not [d for d in run_tmp.iterdir() if d.name.startswith(f"rqp-script-{worker}-")],
        30,
        "the dead worker's scratch directories to be removed",
    )
    cluster.stop()
    assert _files_with(run_tmp, marker) == []
    assert list(run_tmp.iterdir()) == []


def test_a_role_starting_removes_what_dead_processes_left_and_nothing_of_live_ones(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = Path(tempfile.mkdtemp(prefix=f"rqp-script-{gone.pid}-", dir=tmp_path))
    (dead / "nested").mkdir()
    (dead / "nested" / "record.txt").write_text("plaintext")
    live = Path(tempfile.mkdtemp(prefix=f"rqp-script-{os.getppid()}-", dir=tmp_path))
    mine = Path(tempfile.mkdtemp(prefix=f"rqp-script-{os.getpid()}-", dir=tmp_path))
    other = tmp_path / "rqp-script-notours"
    other.mkdir()
    assert remove_leftovers(str(tmp_path)) == [str(dead)]
    assert not dead.exists() and live.exists() and mine.exists() and other.exists()
    # a reaped worker: its directories go, whoever else's stay
    assert remove_leftovers(str(tmp_path), pid=os.getppid()) == [str(live)]
    assert mine.exists() and other.exists()
