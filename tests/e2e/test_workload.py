"""A workload end to end through the real programs: pack, scheduler, two processors, results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
import make_data  # noqa: E402


def test_ten_thousand_records_verified(cluster):
    data = cluster.root / "data.jsonl"
    make_data_main = make_data.record
    import random

    rng = random.Random(7)
    records = [make_data_main(i, rng) for i in range(10_000)]
    cluster.write_data("data.jsonl", records)
    cluster.pack("tenk", data, ROOT / "examples" / "process.py")
    cluster.start_processor(workers=2)
    code, out = cluster.schedule("tenk")
    assert code == 0, out
    results = cluster.results("tenk")
    assert len(results) == 10_000
    for i, rec in enumerate(records):
        assert results[i] == make_data.expected(rec), i
    st = cluster.status("tenk")
    assert (st["state"], st["done"], st["failed"], st["total"]) == ("done", 10_000, 0, 10_000)
    # status records were published, one per record, all done
    ev = cluster.rqp("events", "--max", "1000")
    published = [json.loads(line) for line in ev.stdout.decode().splitlines()]
    assert len(published) == 10_000
    assert {p["state"] for p in published} == {"done"}
    assert len({p["id"] for p in published}) == 10_000


SCRIPT_SOME_FAIL = """
def process(record):
    if record["n"] % 10 == 3:
        raise ValueError(f"bad n {record['n']}")
    return record["n"] * 2
"""


def test_script_raises_on_some_records_only_those_fail(cluster):
    data = cluster.write_data("d.jsonl", [{"n": i} for i in range(200)])
    script = cluster.write_script("s.py", SCRIPT_SOME_FAIL)
    cluster.pack("somefail", data, script)
    cluster.start_processor(workers=2)
    code, out = cluster.schedule("somefail")
    assert code == 1, out  # some records failed: non-zero exit
    results = cluster.results("somefail")
    failures = cluster.failures("somefail")
    assert set(failures) == {i for i in range(200) if i % 10 == 3}
    assert set(results) == {i for i in range(200) if i % 10 != 3}
    assert all(results[i] == 2 * i for i in results)
    f = failures[13]
    assert f["error"].startswith("process() raised ValueError: bad n 13"), f
    assert "(line 4)" in f["error"]
    assert f["attempts"] == 3  # retried up to the limit
    st = cluster.status("somefail")
    assert (st["done"], st["failed"]) == (180, 20)


def test_malformed_record_fails_alone(cluster):
    lines = b'{"n": 1}\n{"n": 2\n\n{"n": 3}\n\r\n  \nnot json at all\n{"n": 5}\n'
    data = cluster.write_data("d.jsonl", lines)
    script = cluster.write_script("s.py", "def process(r):\n    return r['n'] + 100\n")
    cluster.pack("malformed", data, script)
    cluster.start_processor(workers=1)
    code, _ = cluster.schedule("malformed")
    assert code == 1
    assert cluster.results("malformed") == {0: 101, 2: 103, 4: 105}
    failures = cluster.failures("malformed")
    assert set(failures) == {1, 3}
    # record ids count records (blank lines are none); the failure names the line in the file
    assert failures[1]["error"].startswith("malformed record at line 2: not valid JSON"), failures[1]
    assert failures[3]["error"].startswith("malformed record at line 7: not valid JSON"), failures[3]
    assert failures[1]["attempts"] == 1  # not retried: it will never parse


def test_csv_format(cluster):
    data = cluster.write_data("d.csv", b"name,qty\napple,3\npear,5\nbad,row,extra\nfig,7\n")
    script = cluster.write_script("s.py", "def process(r):\n    return {r['name']: int(r['qty']) * 2}\n")
    cluster.pack("csvw", data, script, "--format", "csv")
    cluster.start_processor(workers=1)
    code, _ = cluster.schedule("csvw")
    assert code == 1  # the bad row is a failed record
    assert cluster.results("csvw") == {0: {"apple": 6}, 1: {"pear": 10}, 3: {"fig": 14}}
    assert "3 fields, the header has 2" in cluster.failures("csvw")[2]["error"]
    csv_out = cluster.rqp("results", "csvw", "--format", "csv").stdout.decode().splitlines()
    # flat objects spread over a column per key (rqp results --format csv)
    assert csv_out == ["id,apple,pear,fig", "0,6,,", "1,,10,", "3,,,14"], csv_out


def test_script_parse_format(cluster):
    data = cluster.write_data("d.txt", b"a=1;b=2;c=3")
    script = cluster.write_script(
        "s.py",
        "def parse(stream):\n    for part in stream.read().decode().split(';'):\n        k, v = part.split('=')\n        yield {'k': k, 'v': int(v)}\n\n"
        "def process(r):\n    return r['k'] * r['v']\n",
    )
    cluster.pack("parsew", data, script, "--format", "script")
    cluster.start_processor(workers=1)
    assert cluster.schedule("parsew")[0] == 0
    assert cluster.results("parsew") == {0: "a", 1: "bb", 2: "ccc"}


def test_script_that_fails_to_import_is_a_clear_error(cluster):
    data = cluster.write_data("d.jsonl", [{"n": 1}])
    script = cluster.write_script(
        "s.py", "import os\nraise RuntimeError('missing config')\ndef process(r):\n    return r\n"
    )
    cluster.pack("badimport", data, script)
    code, out = cluster.schedule("badimport")
    assert code == 8  # ScriptError
    assert "the script of workload badimport failed to import (line 2): RuntimeError: missing config" in out
    st = cluster.status("badimport")
    assert st["state"] == "failed"
    assert (
        st["error"] == "the script of workload badimport failed to import (line 2): RuntimeError: missing config"
    )  # unsealed with the KEK
    meta = cluster.r.hgetall("rqp:w:badimport:meta")
    assert b"missing config" not in b"".join(meta.values())  # Redis holds only the sealed form


def test_scheduling_twice_does_not_duplicate(cluster):
    data = cluster.write_data("d.jsonl", [{"n": i} for i in range(500)])
    script = cluster.write_script("s.py", "def process(r):\n    return r['n']\n")
    cluster.pack("twice", data, script)
    cluster.start_processor(workers=2)
    assert cluster.schedule("twice")[0] == 0
    code, out = cluster.schedule("twice")
    assert code == 0 and "already done" in out
    assert cluster.results("twice") == {i: i for i in range(500)}
    assert cluster.status("twice")["enqueued"] == 500


def test_retry_failed_records(cluster):
    data = cluster.write_data("d.jsonl", [{"n": i} for i in range(50)])
    flag = cluster.root / "fixed"
    script = cluster.write_script(
        "s.py",
        f"import os\ndef process(r):\n    if r['n'] == 7 and not os.path.exists({str(flag)!r}):\n        raise RuntimeError('not yet')\n    return r['n']\n",
    )
    cluster.pack("retryw", data, script)
    cluster.start_processor(workers=1)
    assert cluster.schedule("retryw")[0] == 1
    assert set(cluster.failures("retryw")) == {7}
    flag.write_text("ok")
    out = cluster.rqp("retry", "retryw", "--failed").stdout.decode()
    assert "re-queued 1 failed records" in out
    assert cluster.schedule("retryw")[0] == 0
    assert cluster.results("retryw") == {i: i for i in range(50)}
    assert cluster.failures("retryw") == {}
    # the first run's results were streamed into the new ones from a copy, and the copy is gone
    assert not (cluster.root / "blobs" / "workloads" / "retryw" / "results.previous.enc").exists()


def test_record_status_through_its_life(cluster):
    """``rqp status --record``: queued and processing are derived from the chunk (nothing is
    written per record for them), done / failed / queued-for-retry are stored; ids outside the
    workload get one clear line."""
    lines = b"".join(b'{"n": %d}\n' % i for i in range(60)) + b"not json\n"
    data = cluster.write_data("d.jsonl", lines)
    flag = cluster.root / "go-on"
    script = cluster.write_script(
        "s.py",
        (
            "import os, time\n"
            "def process(r):\n"
            "    if r['n'] == 5:\n        raise ValueError('five')\n"
            f"    while r['n'] == 25 and not os.path.exists({str(flag)!r}):\n        time.sleep(0.01)\n"
            "    return r['n']\n"
        ),
    )
    cluster.pack("life", data, script)
    env = {
        "RQP_CHUNK_SIZE": "10",
        "RQP_WINDOW_CHUNKS": "2",
        "RQP_ADAPTIVE_CHUNKS": "false",
        "RQP_RETRY_BACKOFF": "3600",
        "RQP_RETRY_BACKOFF_MAX": "3600",
    }
    cluster.start_scheduler("life", env=env)
    cluster.wait_for(lambda: int(cluster.r.hget("rqp:w:life:meta", "enqueued") or 0) == 20, 30, "two chunks queued")

    def record(n: int) -> dict:
        return json.loads(cluster.rqp("status", "life", "--record", str(n)).stdout)

    queued = record(13)
    assert (queued["state"], queued["attempts"], queued["job"]) == ("queued", 0, "rqp-life-c00000001-0")
    assert queued["queued_at"] > 0
    assert cluster.r.hlen("rqp:w:life:st") == 0  # nothing was written per record to say so
    later = cluster.rqp("status", "life", "--record", "45", check=False)
    assert later.returncode == 7  # WorkloadError
    assert (
        "record 45 of workload life is not queued yet: the scheduler has queued 20 records so far"
        in later.stderr.decode()
    )

    cluster.start_processor(workers=1, env=env)
    cluster.wait_for(lambda: cluster.r.hexists("rqp:w:life:n", "s:rqp-life-c00000002-0"), 60, "chunk 2 to start")
    busy = record(27)
    assert (busy["state"], busy["attempts"], busy["job"]) == ("processing", 1, "rqp-life-c00000002-0"), busy
    assert busy["worker"] and busy["started_at"] >= busy["queued_at"] > 0
    done = record(13)
    assert (done["state"], done["attempts"], done["job"], done["queued_at"]) == (
        "done",
        1,
        "rqp-life-c00000001-0",
        queued["queued_at"],
    )
    assert done["finished_at"] >= done["started_at"] >= done["queued_at"]
    retrying = record(5)
    assert (retrying["state"], retrying["attempts"]) == ("queued", 1), retrying
    assert retrying["error"].startswith("process() raised ValueError: five"), retrying
    assert retrying["queued_at"] > done["finished_at"] + 1700  # due after the backoff (3600 s, jittered down to half)

    flag.write_text("go")
    cluster.wait_for(
        lambda: cluster.r.bitcount("rqp:w:life:done") == 59 and cluster.r.getbit("rqp:w:life:failed", 60),
        60,
        "all but record 5 finished",
    )
    assert record(27)["state"] == "done"
    bad = record(60)
    assert bad["state"] == "failed" and "malformed" in bad["error"].lower(), bad
    beyond = cluster.rqp("status", "life", "--record", "61", check=False)
    assert "workload life has 61 records (ids 0-60); there is no record 61" in beyond.stderr.decode()
