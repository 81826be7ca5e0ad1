"""The console on the two Redis identities it is meant to have (``rqp_console.acl``): every page on
a read-only user, the actions on a user allowed only what ``rqp.control`` needs -- against a real
Redis holding exactly those ACL rules, and real workload state made by the real scheduler and
processor code (``tests/world.py``)."""

from __future__ import annotations

import time

import pytest
import redis
from rq import Worker

from rqp.ledger import register_processor
from rqp_console.acl import ACTIONS_RULES, ACTIONS_USER, READ_RULES, READ_USER

from .helpers import USER, Client, write_simulated_vms

FAILING = "def process(r):\n    if r['n'] % 5 == 0:\n        raise ValueError(f'bad {r[\"n\"]}')\n    return r['n']\n"


@pytest.fixture
def identities(r, tmp_path):
    """The console's two users on the test Redis, with their password files."""
    files = {}
    for user, rules in ((READ_USER, READ_RULES), (ACTIONS_USER, ACTIONS_RULES)):
        pw = f"{user}-secret-password"
        r.execute_command("ACL", "SETUSER", user, "reset", "on", f">{pw}", *rules)
        files[user] = tmp_path / f"{user}.password"
        files[user].write_text(pw + "\n")
    yield files
    for user in (READ_USER, ACTIONS_USER):
        r.execute_command("ACL", "DELUSER", user)


def test_every_page_on_the_read_only_user_and_the_actions_on_theirs(
    world, consoles, identities, redis_url, r, kek, signer
):
    # a finished workload with failed records, and one under way
    world.pack("finished", [{"n": i} for i in range(20)], FAILING)
    proc = world.processor()
    try:
        world.run_to_end(world.run("finished"), proc)
    finally:
        proc.pool.close()
    world.pack("underway", [{"n": i} for i in range(40)])
    running = world.run("underway")
    running.step()
    assert r.hget("rqp:w:underway:meta", "state") == b"running"
    Worker(["rqp"], connection=r, name="rqp-vm1-7").register_birth()
    register_processor(r, host="vm1", pid=7, protections="sandbox: separate process", workers=1, started_at=time.time())
    blob_url = world.settings.blob_url
    write_simulated_vms(blob_url, ["vm1"], time.time(), minutes=5)

    port = r.connection_pool.connection_kwargs["port"]
    console = consoles(
        f"redis://{READ_USER}@127.0.0.1:{port}/0",
        RQP_REDIS_PASSWORD_FILE=str(identities[READ_USER]),
        RQP_CONSOLE_ACTIONS_REDIS_URL=f"redis://{ACTIONS_USER}@127.0.0.1:{port}/0",
        RQP_CONSOLE_ACTIONS_PASSWORD_FILE=str(identities[ACTIONS_USER]),
        RQP_BLOB_URL=blob_url,
        RQP_KEK_FILE=str(kek[0]),
        RQP_TRUSTED_SIGNERS_FILE=str(signer.trusted),
    )
    c = Client(console.url)
    assert c.login().status == 302
    for path in (
        "/api/workloads",
        "/api/workloads/finished",
        "/api/workloads/underway",
        "/api/workloads/underway/failures",
        "/api/fleet",
        "/api/vms?window=15m",
        "/api/audit",
    ):
        resp = c.get(path)
        assert resp.status == 200, (path, resp.text)
    failures = c.get("/api/workloads/finished/failures").json()
    assert [(g["category"], g["count"]) for g in failures["groups"]] == [("ValueError", 4)]
    record = c.get("/api/workloads/finished/records/5").json()
    assert record["state"] == "failed" and record["error"].startswith("process() raised ValueError: bad 5")
    fleet = c.get("/api/fleet").json()
    assert fleet["processors"] == 1 and fleet["hosts"][0]["workers"][0]["name"] == "rqp-vm1-7"
    assert c.get("/api/vms?window=15m").json()["vms"][0]["vm"] == "vm1"

    # the actions, each on the actions user, each audited
    for action, state in (("pause", "paused"), ("resume", "running"), ("cancel", "cancelling")):
        resp = c.post_json(f"/api/workloads/underway/actions/{action}", {"confirm": "underway"})
        assert resp.status == 200 and resp.json()["state"] == state, resp.text
    retry = c.post_json("/api/workloads/finished/actions/retry", {"confirm": "finished"})
    assert retry.status == 200 and retry.json()["requeued"] == 4, retry.text
    assert r.hget("rqp:w:finished:meta", "state") == b"running"
    assert b"finished" in r.lrange("rqp:submissions", 0, -1)
    audit = c.get("/api/audit").json()["entries"]
    assert [(a["what"], a["workload"]) for a in audit] == [
        ("retry", "finished"), ("cancel", "underway"), ("resume", "underway"), ("pause", "underway"),
    ]  # fmt: skip
    # each signed by the console's operator key on behalf of the logged-in person, and verified
    assert {(a["who"], a["verified"], a["cut"]) for a in audit} == {(f"{USER} (console)", True, "")}, audit

    # the read user may not write anything, run a script, or administer Redis
    reader = redis.Redis(host="127.0.0.1", port=port, username=READ_USER, password=f"{READ_USER}-secret-password")
    try:
        for attempt in (
            lambda: reader.hset("rqp:w:underway:meta", "state", "done"),
            lambda: reader.delete("rqp:workloads"),
            lambda: reader.eval("return 1", 0),
            lambda: reader.config_get("*"),
            lambda: reader.keys("*"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt()
    finally:
        reader.close()
    # and the actions user reaches nothing of RQ's, the processors' or the scheduler's own keys
    actor = redis.Redis(host="127.0.0.1", port=port, username=ACTIONS_USER, password=f"{ACTIONS_USER}-secret-password")
    try:
        for attempt in (lambda: actor.lrange("rq:queue:rqp", 0, -1), lambda: actor.lpush("rqp:rejected", "x")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt()
    finally:
        actor.close()
