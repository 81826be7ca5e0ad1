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
from typing import Literal

from .errors import BlobNotFoundError, IntegrityError, RoundUncheckedError
from .storage import BlobStore
from .workload import Workload, blob_name

__all__ = [
    "NOT_CHECKED",
    "OLDER",
    "ROUND_BLOB",
    "AnyRound",
    "check_round_or_raise",
    "foreign_head_error",
    "marked_round",
    "round_checked",
    "round_note",
    "superseded_round_error",
    "unchecked_round_error",
]

#: the marker's name under ``workloads/<id>/`` (the scheduler's ``checkpoint.ROUND_BLOB``)
ROUND_BLOB = "round.enc"

#: the words every "round not checked" note starts with (``round_checked`` looks for them)
NOT_CHECKED = "round not checked"

#: ``--any-round=older`` (client: ``any_round="older"``): accept an unchecked round even when the
#: sealed round marker says a LATER round was begun -- kept apart from plain ``--any-round``, which
#: a reader may pass routinely after the status TTL and must not then take a superseded round
OLDER = "older"

#: what a reader is told to accept: False (only a round the sealed head confirms), True (also a
#: round nothing contradicts), ``OLDER`` (also one the marker says was followed by a later round)
AnyRound = bool | Literal["older"]


def marked_round(store: BlobStore, workload: Workload) -> int | None:
    """The round the marker names; None when there is none (a workload never retried) or it does
    not open under the workload's key."""
    try:
        raw = workload.open_sealed("round", "", store.get(blob_name(workload.id, ROUND_BLOB)))
        value = json.loads(raw)["round"]
    except (BlobNotFoundError, IntegrityError, ValueError, KeyError, TypeError):
        return None
    return value if type(value) is int and value >= 1 else None


def round_note(
    head: tuple[int, bool] | None,
    marked: int | None,
    summary_round: int,
    *,
    foreign: bool = False,
    failed: bool = False,
) -> str:
    """What a reader adds to "verified" about the round (``""``: nothing, the sealed head
    confirms it is current): ``head`` is the sealed head's (round, closed) in Redis, ``marked``
    the round marker's round. Only the sealed head can say which round is current: every round's
    marker is genuine, so an older round's blobs put back WITH that round's own marker (Redis's
    head deleted, or its keys gone after the status TTL) read exactly like the current ones.
    Without a head the note therefore always says the round was not checked, whatever the marker
    says; the marker only sets a floor below which a summary is refused outright. ``foreign``:
    Redis holds a sealed head for the workload that does not open under this generation's key --
    the blob store holds another generation than the one Redis ran (or Redis was altered).
    ``failed``: Redis shows the workload failed (its shown state: wording only, nothing is
    accepted on it) -- a retry round that failed has not ended and never will, so it is not said
    to be running."""
    if head is None and foreign:
        return (
            f" ({NOT_CHECKED}: Redis holds a sealed head that does not open under this generation's key: the "
            f"blob store holds another generation than the one Redis ran, or Redis's head was altered)"
        )
    if head is not None:
        current, closed = head
        if marked is None or marked <= current:
            if not closed and summary_round == current - 1:
                if failed:
                    return f" (round {current} failed: this round stays the current one until a retry round ends)"
                return f" (round {current} is running: it will supersede this round when it ends)"
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


def unchecked_round_error(workload_id: str, round_: int, command: str = "verify", method: str | None = None) -> str:
    """The one line ``rqp verify`` / ``proof`` / ``results`` and the client give when the round
    was not checked (``command``: the ``rqp`` command, and the client method, named in the fix)."""
    return (
        f"workload {workload_id}: round {round_} could not be checked as the current one (no sealed head in "
        f"Redis: deleted, lost, or expired after the status TTL); accept it with 'rqp {command} {workload_id} "
        f"--any-round' (client: {method or command}(any_round=True)) or check while Redis holds the workload"
    )


def superseded_round_error(
    workload_id: str, round_: int, marked: int, command: str = "verify", method: str | None = None
) -> str:
    """The one line when the sealed round marker says a later round than ``round_`` was begun and
    no sealed head says how it ended: these are at best a superseded round's results."""
    return (
        f"workload {workload_id}: round {round_} could not be checked as the current one, and the sealed round "
        f"marker says round {marked} was begun (no sealed head in Redis says how it ended): round {round_} is "
        f"superseded or being replaced, which plain --any-round does not accept; accept it only on purpose with "
        f"'rqp {command} {workload_id} --any-round={OLDER}' (client: {method or command}(any_round=\"{OLDER}\")), or read it "
        f"while Redis holds the workload"
    )


def foreign_head_error(workload_id: str, manifest: str, command: str = "verify", method: str | None = None) -> str:
    """The one line when Redis holds a sealed head for the workload that does not open under the
    key of the generation the blob store holds: a whole superseded generation put back (or Redis's
    head altered) -- told apart from "no head", and never taken by plain ``--any-round``."""
    return (
        f"workload {workload_id}: Redis holds a sealed head that does not open under this generation's key "
        f"(manifest {manifest[:16]}... in the blob store): the blob store holds another generation than the one "
        f"Redis ran (a superseded one put back), or Redis's head was altered; plain --any-round does not "
        f"accept it: 'rqp status {workload_id}', or accept it only on purpose with 'rqp {command} {workload_id} "
        f'--any-round={OLDER}\' (client: {method or command}(any_round="{OLDER}"))'
    )


def check_round_or_raise(
    workload_id: str,
    head: tuple[int, bool] | None,
    marked: int | None,
    summary_round: int,
    any_round: AnyRound,
    command: str = "verify",
    method: str | None = None,
    *,
    foreign: str = "",
    failed: bool = False,
) -> str:
    """The rule every reader that hands results or a proof out applies (``rqp verify``, ``rqp
    proof``, ``rqp results`` and the client's ``verify``/``proof``/``results``): the round note
    (``round_note``, ``""`` when the sealed head confirms the round); ``RoundUncheckedError`` when
    it could not be checked, unless ``any_round`` -- and, when the marker names a later round than
    ``summary_round``, or when Redis holds a head of another generation (``foreign``: this
    generation's manifest digest), unless ``any_round == OLDER`` (a distinct, explicit choice).
    ``command``: the ``rqp`` command named in the fix; ``method``: the client's (default the same)."""
    note = round_note(head, marked, summary_round, foreign=bool(foreign), failed=failed)
    if round_checked(note):
        return note
    if foreign and head is None and any_round != OLDER:
        raise RoundUncheckedError(foreign_head_error(workload_id, foreign, command, method))
    if marked is not None and marked > summary_round and any_round != OLDER:
        raise RoundUncheckedError(superseded_round_error(workload_id, summary_round, marked, command, method))
    if not any_round:
        raise RoundUncheckedError(unchecked_round_error(workload_id, summary_round, command, method))
    return note
