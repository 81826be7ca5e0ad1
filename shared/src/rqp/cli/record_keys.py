"""``rqp status W --record`` by a record's own key (``rqp pack --id-field``): the record's number
found from its key, in what is sealed where the workload keeps it.

Keys are only ever stored sealed (they are the data's own ids), so the search opens each place in
turn, cheapest first: the committed chunks' notes in Redis (the done records), the status records
in Redis (the failed and retrying ones), then, for a workload that ended, its sealed summary's
failures and its results."""

from __future__ import annotations

import json

from ..backends import Backends
from ..errors import RqpError, WorkloadError
from ..jsonsafe import result_line
from ..ledger import Ledger
from ..status import ChunkNote, StatusRecord
from ..workload import Workload

__all__ = ["record_number"]


def record_number(b: Backends, workload: Workload, text: str) -> int:
    """The record ``text`` names: a 0-based number, or, for a workload packed with
    ``--id-field``, a record's own key. ``WorkloadError`` naming what would work when neither
    fits."""
    wid = workload.id
    field = workload.manifest.id_field
    try:
        rid = int(text)
    except ValueError:
        rid = None
    if rid is not None and (field is None or rid >= 0):
        if rid < 0:
            raise WorkloadError(
                f"there is no record {rid}: record ids are the records' 0-based numbers in the data (0, 1, 2, ...)"
            )
        return rid
    if field is None:
        raise WorkloadError(
            f"workload {wid} was packed without --id-field, so its records have no keys: name one by its 0-based "
            f"number in the data (--record 0, 1, 2, ...)"
        )
    found = _in_redis(b, workload, text)
    if found is None:
        found = _in_the_end(b, workload, text)
    if found is None:
        raise WorkloadError(
            f"workload {wid} has no done or failed record whose {field} is {text!r}; check the key ('rqp results "
            f"{wid}' lists them), or name a record still queued or running by its 0-based number"
        )
    return found


def _in_redis(b: Backends, workload: Workload, key: str) -> int | None:
    """The record of ``key`` among the done records' chunk notes and the stored status records."""
    led = Ledger(b.redis, workload.id)
    for chunk, sealed in led.notes():
        note = ChunkNote.open(workload, chunk, sealed)
        if note.keys and key in note.keys:
            return list(note.done_ids())[note.keys.index(key)]
    for field_, sealed in b.redis.hscan_iter(led.k.st, count=1000):
        rid = int(field_)
        if StatusRecord.open(workload, rid, bytes(sealed)).key == key:
            return rid
    return None


def _in_the_end(b: Backends, workload: Workload, key: str) -> int | None:
    """The record of ``key`` in an ended workload's sealed summary (failures) and results."""
    from ..summary import read_summary  # noqa: PLC0415 - only an ended workload's search needs them
    from .results import read_results  # noqa: PLC0415

    try:
        summary = read_summary(b.blobs, workload)
    except (RqpError, ValueError):
        return None
    for failure in summary.failures:
        if failure.key == key:
            return failure.id
    for line in read_results(b.blobs, workload):
        if not line.strip():
            continue
        doc = json.loads(result_line(line))
        if doc.get("key") == key:
            return int(doc["id"])
    return None
