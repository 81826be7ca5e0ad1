"""The sealed round marker (``workloads/W/round.enc``), read by every reader as a floor for the
round of the summary it accepts.

The scheduler seals "round R runs" there when a ``rqp retry`` round begins, before Redis is told
(``rqp_scheduler.run.checkpoint.mark_round``). Readers compare a summary's round with the
workload's sealed head in Redis; a head that is deleted or junk (a Redis writer, or Redis lost)
would leave nothing to compare with, and an older round's blobs put back would read as current.
The marker closes that: it is in the blob store, sealed under the workload's data key (a blob
writer can delete it but not forge one), so only an attacker holding both Redis and the blob
store, deleting both, is left unchecked -- and readers then say so (SECURITY.md).
"""

from __future__ import annotations

import json

from .errors import BlobNotFoundError, IntegrityError
from .storage import BlobStore
from .workload import Workload, blob_name

__all__ = ["ROUND_BLOB", "marked_round"]

#: the marker's name under ``workloads/<id>/`` (the scheduler's ``checkpoint.ROUND_BLOB``)
ROUND_BLOB = "round.enc"


def marked_round(store: BlobStore, workload: Workload) -> int | None:
    """The round the marker names; None when there is none (a workload never retried) or it does
    not open under the workload's key."""
    try:
        raw = workload.open_sealed("round", "", store.get(blob_name(workload.id, ROUND_BLOB)))
        value = json.loads(raw)["round"]
    except (BlobNotFoundError, IntegrityError, ValueError, KeyError, TypeError):
        return None
    return value if type(value) is int and value >= 1 else None


def round_note(head: tuple[int, bool] | None, marked: int | None, summary_round: int) -> str:
    """What a reader adds to "verified" about the round (``""``: nothing, the sealed head
    confirms it is current): ``head`` is the sealed head's (round, closed) in Redis, ``marked``
    the round marker's round. Without a head, an older round's blobs put back (with Redis's head
    deleted or lost) cannot be told from the current ones beyond the marker's floor, so the
    output says the round was not checked rather than passing silently."""
    if head is not None:
        current, closed = head
        if marked is None or marked <= current:
            return "" if summary_round >= (current if closed else current - 1) else " (an older round)"
    if marked is not None and summary_round < marked:
        return (
            f" (round not checked: the sealed round marker says round {marked} was begun and no sealed head "
            f"in Redis says whether it ended; 'rqp status' once Redis holds it)"
        )
    if marked is not None:
        return ""
    return (
        " (round not checked: no sealed head in Redis and no round marker in the blob store; "
        "an older round's blobs put back would not be told apart)"
    )
