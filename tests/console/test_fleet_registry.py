"""The fleet registry (``rqp.ledger`` ``_fleet``): processors announce themselves and drop out."""

from __future__ import annotations

import logging
import time

import redis

from rqp.ledger import FLEET, FleetHeartbeat, fleet, leave_fleet, register_processor


def test_registered_processors_are_listed_until_they_expire(r):
    now = time.time()
    register_processor(r, host="vm-b", pid=7, protections="sandbox: x", workers=2, started_at=now - 5, ttl=60, now=now)
    register_processor(r, host="vm-a", pid=9, protections="sandbox: y", workers=4, started_at=now, ttl=60, now=now)
    entries = fleet(r, now=now + 1)
    assert [(e["host"], e["pid"], e["workers"], e["protections"]) for e in entries] == [
        ("vm-a", 9, 4, "sandbox: y"),
        ("vm-b", 7, 2, "sandbox: x"),
    ]
    assert 0 < r.ttl("rqp:fleet:vm-a:9") <= 60
    # past its TTL an entry is not listed, and the next registration prunes it from the index
    assert fleet(r, now=now + 61) == []
    register_processor(r, host="vm-c", pid=1, protections="", workers=1, started_at=now, ttl=60, now=now + 61)
    assert r.zrange(FLEET, 0, -1) == [b"vm-c:1"]


def test_leaving_takes_the_entry_out_at_once(r):
    register_processor(r, host="h", pid=1, protections="p", workers=1, started_at=0.0)
    leave_fleet(r, "h", 1)
    assert fleet(r) == [] and not r.exists("rqp:fleet:h:1")


def test_heartbeat_is_throttled_and_best_effort(r, redis_url, caplog):
    hb = FleetHeartbeat(r, "h", 5, "sandbox: on", 3, interval=3600)
    assert hb.beat()
    r.delete("rqp:fleet:h:5")
    assert hb.beat()  # not due: nothing written
    assert not r.exists("rqp:fleet:h:5")
    # a Redis that refuses (a user without the fleet keys, or Redis away) costs one warning, never an exception
    r.execute_command("ACL", "SETUSER", "nofleet", "on", ">pw", "+@all", "~rq:*")
    try:
        host, port = r.connection_pool.connection_kwargs["host"], r.connection_pool.connection_kwargs["port"]
        limited = redis.Redis(host=host, port=port, username="nofleet", password="pw")
        hb2 = FleetHeartbeat(limited, "h", 6, "p", 1, interval=0)
        with caplog.at_level(logging.WARNING, logger="rqp.fleet"):
            assert hb2.beat() is False
            assert hb2.beat() is False
        warnings = [rec for rec in caplog.records if "fleet registry" in rec.getMessage()]
        assert len(warnings) == 1 and "rqp:fleet" in warnings[0].getMessage()
        hb2.leave()  # no exception either
        limited.close()
    finally:
        r.execute_command("ACL", "DELUSER", "nofleet")


def test_the_fleet_view_labels_every_processor_self_reported(r):
    """A forged entry (a processor that does not exist, "with landlock, seccomp, rlimits") is
    shown exactly like a real one: as self-reported, never verified -- nothing signs it."""
    from rqp_console.fleet import EVIDENCE, fleet_view

    now = time.time()
    register_processor(
        r, host="gpu-07", pid=4242, protections="sandbox: landlock, seccomp, rlimits", workers=8, started_at=now
    )
    view = fleet_view(r, "rqp", now=now)
    (host,) = view["hosts"]
    assert EVIDENCE == "self-reported"
    assert [p["evidence"] for p in host["processors"]] == ["self-reported"]
    assert "self-reported" in view["evidence_note"] and "verified" in view["evidence_note"]
