"""`rqp pack --id-field`: the data's own ids travel with the records, through the real programs,
into results, failures (after retries), status records and status messages."""

from __future__ import annotations

import json

SCRIPT = (
    "import rqp\n\n"
    "def process(r):\n"
    "    if r['amount'] < 0:\n        raise rqp.PermanentError('negative amount')\n"
    "    if r['amount'] == 13:\n        raise RuntimeError('unlucky')\n"
    "    return r['amount'] * 2\n"
)


def test_the_datas_own_ids_travel_with_the_records(cluster):
    records = [{"customer": f"C-{i:04d}", "amount": i} for i in range(40)]
    records[7]["amount"] = -5  # fails at once (PermanentError)
    del records[11]["customer"]  # cannot be queued: no id
    # record 13 raises every time: retried, then failed, keeping its id
    data = cluster.write_data("keyed.jsonl", records)
    wid = cluster.pack("keyed", data, cluster.write_script("keyed.py", SCRIPT), "--id-field", "customer")
    cluster.start_processor(2)
    code, out = cluster.schedule(
        wid, env={"RQP_CHUNK_SIZE": "8", "RQP_ADAPTIVE_CHUNKS": "false", "RQP_MAX_ATTEMPTS": "2"}
    )
    assert code == 1, out
    lines = [json.loads(x) for x in cluster.rqp("results", wid).stdout.decode().splitlines()]
    assert lines[0] == {"id": 0, "key": "C-0000", "result": 0}
    assert {d["id"]: d["key"] for d in lines} == {i: f"C-{i:04d}" for i in range(40) if i not in (7, 11, 13)}
    failures = cluster.failures(wid)
    assert failures[7]["key"] == "C-0007" and failures[7]["attempts"] == 1
    assert failures[7]["error"] == "process() raised PermanentError: negative amount (line 5) (permanent: not retried)"
    assert failures[13]["key"] == "C-0013" and failures[13]["attempts"] == 2  # its id kept through the retry
    assert "key" not in failures[11] and failures[11]["error"] == (
        "record 11 has no id in field 'customer' (a string or a number; rqp pack --id-field customer)"
    )
    csv_rows = cluster.rqp("results", wid, "--failed", "--format", "csv").stdout.decode().splitlines()
    assert csv_rows[0] == "id,key,attempts,error" and csv_rows[1].startswith("7,C-0007,1,")
    st = json.loads(cluster.rqp("status", wid, "--record", "3", "--json").stdout)
    assert (st["state"], st["key"]) == ("done", "C-0003")
    published = [json.loads(x) for x in cluster.rqp("events", "--max", "1000").stdout.decode().splitlines()]
    by_id = {p["id"]: p for p in published}
    assert by_id[3]["key"] == "C-0003" and by_id[13]["key"] == "C-0013" and by_id[13]["state"] == "failed"
