"""What the tests of rounds share: a round's blobs kept and put back as a blob-store writer
would, and a signed ``rqp retry --failed`` run to its end."""

from __future__ import annotations

from rqp import control
from rqp.results_root import INPUTS_BLOB, LEAVES_BLOB
from rqp.summary import RESULTS_BLOB, SUMMARY_BLOB
from rqp.workload import blob_name

#: the blobs that make up an ended round (its summary, results, leaf hashes and input digests)
ROUND_BLOBS = (SUMMARY_BLOB, RESULTS_BLOB, LEAVES_BLOB, INPUTS_BLOB)


def keep_round(world, wid: str) -> dict[str, bytes]:
    return {name: world.store.get(blob_name(wid, name)) for name in ROUND_BLOBS}


def put_back(world, wid: str, blobs: dict[str, bytes]) -> None:
    for name, data in blobs.items():
        world.store.put(blob_name(wid, name), data)


def retry_round(world, proc, operator, wid: str) -> None:
    control.retry_failed(world.r, world.store, world.backends().workload(wid), operator.key, "ops@test")
    world.run_to_end(world.run(wid), proc)
