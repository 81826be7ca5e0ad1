"""The same 10,000-record workload on the Azure backends (Blob + Queue Storage on Azurite),
measured beside the local backend in the same run."""

from __future__ import annotations

import json
import random
import sys
import uuid
from pathlib import Path

from harness import Cluster

from rqp.azure.blob import AzureBlobStore

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
import make_data  # noqa: E402

N = 10_000


def _run(cluster: Cluster, wid: str, records: list[dict]) -> dict:
    data = cluster.write_data(f"{wid}.jsonl", records)
    cluster.pack(wid, data, ROOT / "examples" / "process.py")
    data.unlink()
    cluster.start_processor(workers=2)
    cluster.wait_for(lambda: len(cluster.r.smembers("rq:workers")) >= 2, 60, "workers to register")
    code, out = cluster.schedule(wid, timeout=300)
    assert code == 0, out + cluster.logs()
    results = cluster.results(wid)
    assert len(results) == N
    for i, rec in enumerate(records):
        assert results[i] == make_data.expected(rec), i
    st = cluster.status(wid)
    assert (st["state"], st["done"], st["failed"]) == ("done", N, 0)
    cluster.stop()
    return st


def test_ten_thousand_records_local_and_azure(tmp_path, redis_url, kek, azurite, capsys):
    rng = random.Random(11)
    records = [make_data.record(i, rng) for i in range(N)]

    local = _run(Cluster(tmp_path / "local", redis_url, kek[0]), "onlocal", records)

    conn = tmp_path / "storage-conn"
    conn.write_text(azurite.connection_string)
    conn.chmod(0o600)
    container = f"rqp-{uuid.uuid4().hex[:12]}"
    blob_url = f"azure-blob://devstoreaccount1/{container}?connection_string_file={conn}"
    AzureBlobStore.from_url(blob_url).create_container()
    azure_cluster = Cluster(
        tmp_path / "azure",
        redis_url,
        kek[0],
        blob_url=blob_url,
        extra_env={"RQP_QUEUE_URL": f"azure-queue://devstoreaccount1?connection_string_file={conn}"},
    )
    azure = _run(azure_cluster, "onazure", records)

    # the status records went to Azure Queue Storage, packed many per message
    events = azure_cluster.rqp("events", "--max", "32", "--wait", "2")
    published = [json.loads(line) for line in events.stdout.decode().splitlines()]
    assert len(published) == N and {p["state"] for p in published} == {"done"}
    assert not list((tmp_path / "azure").glob("blobs"))  # nothing went to a local directory
    with capsys.disabled():
        print(
            f"\n[backends] local: {local['rate']:,.0f} records/s, Azure (Azurite): {azure['rate']:,.0f} records/s, "
            f"ratio {azure['rate'] / local['rate']:.2f}"
        )
