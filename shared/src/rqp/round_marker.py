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

__all__ = ["NOT_CHECKED", "ROUND_BLOB", "marked_round", "round_checked", "round_note", "unchecked_round_error"]

#: the marker's name under ``workloads/<id>/`` (the scheduler's ``checkpoint.ROUND_BLOB``)
ROUND_BLOB = "round.enc"

#: the words every "round not checked" note starts with (``round_checked`` looks for them)
NOT_CHECKED = "round not checked"


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
    the round marker's round. Only the sealed head can say which round is current: every round's
    marker is genuine, so an older round's blobs put back WITH that round's own marker (Redis's
    head deleted, or its keys gone after the status TTL) read exactly like the current ones.
    Without a head the note therefore always says the round was not checked, whatever the marker
    says; the marker only sets a floor below which a summary is refused outright."""
    if head is not None:
        current, closed = head
        if marked is None or marked <= current:
            return "" if summary_round >= (current if closed else current - 1) else " (an older round)"
    if marked is not None and summary_round < marked:
        return (
            f" ({NOT_CHECKED}: the sealed round marker says round {marked} was begun and no sealed head "
            f"in Redis says whether it ended; 'rqp status' once Redis holds it)"
        )
    if head is not None:
        return ""
    if marked is not None:
        return (
            f" ({NOT_CHECKED}: no sealed head in Redis says which round is current; the sealed round marker "
            f"names round {marked}, but an older round's marker put back with its blobs reads the same)"
        )
    return (
        f" ({NOT_CHECKED}: no sealed head in Redis and no round marker in the blob store; "
        "an older round's blobs put back would not be told apart)"
    )


def round_checked(note: str) -> bool:
    """Whether ``note`` (from ``round_note``) lets a reader say plainly "verified": False when the
    round could not be checked (``rqp verify`` then exits ``RoundUncheckedError.exit_code`` unless
    ``--any-round``; the client raises it unless ``any_round=True``; the console's badge says
    "round not checked")."""
    return NOT_CHECKED not in note


def unchecked_round_error(workload_id: str, round_: int) -> str:
    """The one line ``rqp verify`` and ``Workload.verify()`` give when the round was not checked."""
    return (
        f"workload {workload_id}: round {round_} could not be checked as the current one (no sealed head in "
        f"Redis: deleted, lost, or expired after the status TTL); accept it with 'rqp verify {workload_id} "
        f"--any-round' (client: verify(any_round=True)) or check while Redis holds the workload"
    )
