"""Redis lost entirely (issue #26 item 4), with real processes: a scheduler and processors run a
workload, Redis dies with no persistence and comes back empty, and a new ``rqp-scheduler run``
resumes the workload from its checkpoint in the blob store -- every result once and correct,
and only the records after the checkpoint run again."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest
import redis
from harness import Cluster, bin_path
from redis_server import RedisServer

from rqp.ledger import ChunkKind, WorkloadKeys, parse_note_field
from rqp_scheduler.run.checkpoint import CHECKPOINT_DIR, RESUME_CHUNK_GAP

SCRIPT = """
import time

def process(record):
    time.sleep(0.001)
    return record["n"] * 3
"""


def _checkpoints(cluster: Cluster, wid: str) -> int:
    directory = cluster.root / "blobs" / "workloads" / wid / CHECKPOINT_DIR
    return len(list(directory.glob("*.enc"))) if directory.exists() else 0


def _resume_with_serve(cluster: Cluster, wid: str) -> str:
    """``rqp-scheduler serve`` and ``rqp submit W`` (the submission list went with Redis): its
    log once the workload is done."""
    log_path = cluster.root / "serve.log"
    with open(log_path, "wb") as log:
        serve = subprocess.Popen(
            [bin_path("rqp-scheduler"), "serve"], env=cluster.env, cwd=cluster.root, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    cluster.procs.append(serve)
    try:
        cluster.rqp("submit", wid)
        cluster.wait_for(lambda: cluster.status(wid).get("state") == "done", 180, "the resumed workload to end")
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(30)
    return log_path.read_text(errors="replace")


@pytest.mark.parametrize("resume", ["run", "serve"])
def test_a_workload_resumes_from_the_blob_store_after_redis_is_lost(tmp_path, kek, resume):
    server = RedisServer(appendonly=False).start()  # no AOF, no snapshots: a restart is an empty Redis
    cluster = Cluster(
        tmp_path / "c",
        server.url,
        kek[0],
        extra_env={"RQP_CHUNK_SIZE": "100", "RQP_ADAPTIVE_CHUNKS": "false", "RQP_WINDOW_CHUNKS": "4",
                   "RQP_CHECKPOINT_SECONDS": "0.3"},
    )  # fmt: skip
    wid, n = "lost", 4000
    try:
        data = cluster.write_data(f"{wid}.jsonl", ({"n": i} for i in range(n)))
        cluster.pack(wid, data, cluster.write_script(f"{wid}.py", SCRIPT))
        cluster.start_processor(workers=2)
        sched = cluster.start_scheduler(wid)
        done = WorkloadKeys(wid).done
        cluster.wait_for(
            lambda: cluster.r.bitcount(done) >= 1200 and _checkpoints(cluster, wid) >= 2, 90, "checkpointed progress"
        )
        os.killpg(sched.pid, signal.SIGKILL)
        sched.wait()
        server.stop(kill=True)  # both copies gone: what comes back is empty
        server.start()
        cluster.r = redis.Redis.from_url(server.url)
        assert not cluster.r.exists(WorkloadKeys(wid).meta)  # (processors reconnecting may write their own keys)

        if resume == "run":
            code, out = cluster.schedule(wid, timeout=180)
            assert code == 0, out[-3000:] + cluster.logs()
        else:
            out = _resume_with_serve(cluster, wid)
        resumed = re.search(r"resumed from checkpoint \d+: (\d+) records", out)
        assert resumed, out[-3000:]
        covered = int(resumed.group(1))
        assert 0 < covered < n

        results = cluster.results(wid)  # raises if a record appears twice
        assert results == {i: 3 * i for i in range(n)}
        # what ran again: the chunks the resumed run queued (numbered past its gap), nothing before the checkpoint
        rerun = 0
        for name in cluster.r.hkeys(WorkloadKeys(wid).notes):
            chunk, first, last = parse_note_field(name.decode())
            if ChunkKind.of(chunk) is ChunkKind.DATA and int(chunk[1:]) >= RESUME_CHUNK_GAP:
                assert first >= covered
                rerun += last - first + 1
        assert rerun == n - covered
        print(f"\n{resume}: the checkpoint covered {covered} of {n} records at the loss; {rerun} ran again")
    finally:
        cluster.stop()
        server.stop()
