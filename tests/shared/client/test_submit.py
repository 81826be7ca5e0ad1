"""``rqp.Client.submit``: records, a DataFrame, a Table, a Parquet or JSON Lines file, a script
path or its source -- packed, signed and submitted as ``rqp pack --submit`` does -- then the
handle's status, wait, results and failures, against the real Redis of tests/world.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

import rqp
from rqp.ledger import SUBMISSIONS
from rqp.workload import Workload as Opened

SCRIPT = "def process(r):\n    if r['n'] == 3:\n        raise ValueError('three')\n    return {'double': r['n'] * 2}\n"


def _data(world: Any, wid: str) -> list[Any]:
    """The records the scheduler will read: the uploaded data, decrypted and verified."""
    opened = Opened.open(world.store, world.keys, wid, world.trust())
    return [json.loads(line) for line in b"".join(opened.data_chunks()).splitlines() if line]


def test_a_generator_is_packed_signed_and_submitted_and_its_results_come_back(client, world, run_to_end, r):
    records = ({"n": i} for i in range(10))  # a generator: read once, never listed
    w = client.submit(records, SCRIPT, id="gen-1")
    assert w.id == "gen-1"
    assert r.lrange(SUBMISSIONS, 0, -1) == [b"gen-1"]
    assert w.status().state == "submitted"
    assert _data(world, "gen-1") == [{"n": i} for i in range(10)]
    opened = Opened.open(world.store, world.keys, "gen-1", world.trust())
    assert opened.signer == world.signer.key.fingerprint  # signed with RQP_SIGNING_KEY_FILE

    run_to_end("gen-1")
    final = w.wait(timeout=5, progress=False)
    assert (final.state, final.done, final.failed, final.total, final.verified) == ("done", 9, 1, 10, True)
    results = list(w.results())
    assert [x["id"] for x in results] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert results[0] == {"id": 0, "result": {"double": 0}}
    [failure] = w.failures()
    assert (failure.id, failure.attempts) == (3, 2) and "three" in (failure.error or "")


def test_id_field_travels_with_results(client, run_to_end):
    w = client.submit([{"inv": f"INV-{i}", "n": i} for i in range(5)], SCRIPT, id="keyed", id_field="inv")
    run_to_end(w.id)
    assert [(x["id"], x["key"]) for x in w.results()] == [(0, "INV-0"), (1, "INV-1"), (2, "INV-2"), (4, "INV-4")]
    assert [(f.id, f.key) for f in w.failures()] == [(3, "INV-3")]


def test_a_path_and_a_script_path_are_packed_as_the_cli_packs_them(client, world, tmp_path):
    data = tmp_path / "in.csv"
    data.write_text("n,name\n1,a\n2,b\n")
    script = tmp_path / "p.py"
    script.write_text(SCRIPT)
    w = client.submit(data, str(script))
    assert w.id.startswith("in-")
    opened = Opened.open(world.store, world.keys, w.id, world.trust())
    assert opened.manifest.format == "csv"
    assert opened.script_source() == SCRIPT.encode()


def test_priority_is_set_by_a_signed_request(client, r):
    from rqp.ledger import Ledger

    w = client.submit([{"n": 1}], SCRIPT, id="urgent", priority="high")
    assert Ledger(r, w.id).priority().value == "high"


@pytest.mark.parametrize(
    ("data", "script", "why"),
    [
        ([{"n": float("nan")}], SCRIPT, "record 0 cannot be sent as JSON"),
        ([{"n": object()}], SCRIPT, "record 0 cannot be sent as JSON"),
        ({"n": 1}, SCRIPT, "cannot submit data of type dict"),
        ([{"n": 1}], "def other(r):\n    return r\n", r"defines no process\(record\)"),
        ([{"n": 1}], "missing.py", "cannot read missing.py"),
        ("nowhere.jsonl", SCRIPT, "cannot read nowhere.jsonl"),
    ],
)
def test_what_cannot_be_submitted_is_one_rqp_error_and_nothing_is_submitted(client, world, r, data, script, why):
    with pytest.raises(rqp.RqpError, match=why):
        client.submit(data, script, id="bad")
    assert r.lrange(SUBMISSIONS, 0, -1) == []
    assert list(world.store.list("workloads/bad/")) == []  # nothing half-uploaded is left behind


def test_a_bad_record_deep_in_a_stream_leaves_nothing_behind(client, world):
    records = (
        {"n": i if i != 50_000 else float("inf"), "pad": "x" * 40} for i in range(60_000)
    )  # 3 MB: pieces uploaded first
    with pytest.raises(rqp.WorkloadError, match="record 50000 cannot be sent as JSON"):
        client.submit(records, SCRIPT, id="late-bad")
    assert list(world.store.list("workloads/late-bad/")) == []


def test_a_bad_priority_is_refused_before_anything_is_packed(client, world):
    with pytest.raises(rqp.WorkloadError, match="priority 'urgent' is not one of high, normal, low"):
        client.submit([{"n": 1}], SCRIPT, id="p", priority="urgent")
    assert not world.store.exists("workloads/p/manifest.json")


def test_unknown_workload_is_a_workload_error(client):
    with pytest.raises(rqp.WorkloadError, match="not known to Redis nor packed"):
        client.workload("nope")


def test_workloads_lists_the_started_ones(client, run_to_end):
    w = client.submit([{"n": 1}], SCRIPT, id="listed")
    run_to_end(w.id)
    assert [x.id for x in client.workloads()] == ["listed"]


def test_settings_precedence_is_the_clis(tmp_path, monkeypatch, world):
    """A keyword beats the environment, which beats the config file (``rqp.config``)."""
    config = tmp_path / "rqp.toml"
    config.write_text('blob_url = "file:///from-file"\nchunk_size = 7\n')
    monkeypatch.setenv("RQP_BLOB_URL", "file:///from-env")
    c = rqp.Client(config, redis_url=world.settings.redis_url)
    assert c.settings.blob_url == "file:///from-env"
    assert c.settings.chunk_size == 7
    assert rqp.Client(config, blob_url="file:///from-flag").settings.blob_url == "file:///from-flag"


def test_no_call_prints(client, run_to_end, capsys):
    w = client.submit([{"n": i} for i in range(6)], SCRIPT, id="quiet")
    run_to_end(w.id)
    w.wait(progress=False)
    list(w.results())
    w.failures()
    assert capsys.readouterr() == ("", "")


def test_a_keyword_that_is_no_setting_is_a_config_error():
    with pytest.raises(
        rqp.ConfigError, match=r"rqp\.Client got redis_ulr=, which is not a setting; did you mean redis_url\?"
    ):
        rqp.Client(redis_ulr="redis://localhost")
