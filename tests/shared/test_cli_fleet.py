"""``rqp fleet``: how many processors a real backlog in Redis wants (issue #27 item 4).

A real scheduler enqueues a workload with no processor running, so its records stay queued;
``rqp fleet`` reads them from Redis and applies the documented formula."""

from __future__ import annotations

import json
import time

import pytest
from rq import Queue, Worker

from rqp.cli.fleet import FleetSettings, wanted_processors
from rqp.config import DEFAULT_RQ_QUEUE
from rqp.errors import ConfigError
from rqp.ledger import register_processor
from rqp.redis_acl import role_rules

RECORDS = 60


@pytest.mark.parametrize(
    ("queued", "rate", "drain", "lo", "hi", "want"),
    [
        (0, 5.0, 600, 0, 20, 0),  # nothing queued: the minimum
        (0, 5.0, 600, 2, 20, 2),
        (3000, 5.0, 600, 0, 20, 1),  # exactly one processor's drain
        (3001, 5.0, 600, 0, 20, 2),  # one more record: round up
        (10**18, 5.0, 600, 0, 20, 20),  # a forged counter cannot go past the maximum
        (10**15, 1e-300, 600, 0, 20, 20),  # nor a forged, vanishing measured rate
    ],
)
def test_the_formula_rounds_up_and_stays_within_the_bounds(queued, rate, drain, lo, hi, want):
    assert wanted_processors(queued, rate, drain, lo, hi) == want


def test_bad_settings_are_one_line_naming_the_variable():
    with pytest.raises(ConfigError, match="RQP_FLEET_MAX"):
        FleetSettings(minimum=5, maximum=2)
    with pytest.raises(ConfigError, match="RQP_FLEET_RECORDS_PER_SECOND"):
        FleetSettings.from_env({"RQP_FLEET_RECORDS_PER_SECOND": "-1"})


def test_fleet_reads_the_queued_backlog_of_a_running_workload(cluster):
    data = cluster.write_data("d.jsonl", ({"n": i} for i in range(RECORDS)))
    script = cluster.write_script("s.py", "def process(r):\n    return r\n")
    wid = cluster.pack("fleet-w", data, script)
    cluster.start_scheduler(wid)  # no processor: every record stays queued
    cluster.wait_for(
        lambda: (s := cluster.status(wid)).get("state") == "running" and s.get("total") == RECORDS,
        what="the workload to be enqueued whole",
    )

    doc = json.loads(cluster.rqp("fleet", "--json", "--rate", "1", "--drain-seconds", "10").stdout)
    assert doc["backlog"]["queued"] == RECORDS and doc["backlog"]["workloads"] == 1
    assert doc["backlog"]["processors"] == 0
    assert doc["rate_from"] == "setting" and doc["wanted"] == 6  # ceil(60 / (1 x 10))

    # the maximum bounds it; --count prints only the number a script passes to --scale
    assert cluster.rqp("fleet", "--count", "--rate", "1", "--drain-seconds", "10", "--max", "4").stdout == b"4\n"
    # settings come from the environment as well
    env = {"RQP_FLEET_RECORDS_PER_SECOND": "2", "RQP_FLEET_DRAIN_SECONDS": "5"}
    cp = cluster.rqp("fleet", "--count", env=env)
    assert cp.stdout == b"6\n" and b"RQP_FLEET" not in cp.stderr  # known variables: no misspelling warning

    # two processors in the fleet registry (three RQ workers between them): the backlog per
    # processor halves; the formula counts processors, as --scale and a scale set do
    for pid in (101, 102):
        register_processor(cluster.r, host="vm-1", pid=pid, protections="", workers=2, started_at=time.time())
    workers = [Worker([Queue(DEFAULT_RQ_QUEUE, connection=cluster.r)], connection=cluster.r) for _ in range(3)]
    for w in workers:
        w.register_birth()
    try:
        text = cluster.rqp("fleet", "--rate", "1", "--drain-seconds", "10").stdout.decode()
    finally:
        for w in workers:
            w.register_death()
    assert f"{RECORDS} record(s) queued in 1 running workload(s); 2 processor(s) with 3 worker(s)" in text
    assert "(30.0 per processor)" in text and "wanted: 6 processor(s) = ceil(60 / (1 x 10))" in text

    # the console's read-only Redis user (what the metrics logger's backlog reader is pointed at) may
    # read all of it
    console = "fleet-console-test"
    cluster.r.execute_command("ACL", "SETUSER", console, "reset", "on", ">pw", *role_rules()["console"])
    try:
        url = cluster.redis_url.replace("redis://", f"redis://{console}@", 1)
        (cluster.root / "console_pw").write_text("pw\n")
        env = {"RQP_REDIS_PASSWORD_FILE": str(cluster.root / "console_pw")}
        doc = json.loads(cluster.rqp("fleet", "--json", "--redis-url", url, env=env).stdout)
    finally:
        cluster.r.execute_command("ACL", "DELUSER", console)
    assert doc["backlog"]["queued"] == RECORDS and doc["backlog"]["processors"] == 2


def test_a_paused_workload_wants_no_processor(cluster):
    data = cluster.write_data("d.jsonl", ({"n": i} for i in range(10)))
    script = cluster.write_script("s.py", "def process(r):\n    return r\n")
    wid = cluster.pack("fleet-p", data, script)
    cluster.start_scheduler(wid)
    cluster.wait_for(lambda: cluster.status(wid).get("total") == 10, what="the workload to be enqueued")
    cluster.rqp("pause", wid)
    cluster.wait_for(lambda: cluster.status(wid).get("state") == "paused", what="the pause")
    doc = json.loads(cluster.rqp("fleet", "--json", "--min", "1").stdout)
    assert doc["backlog"]["queued"] == 0 and doc["wanted"] == 1  # the minimum, nothing more
