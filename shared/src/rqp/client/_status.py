"""``Workload.status()``: a typed, frozen snapshot of a workload's progress."""

from __future__ import annotations

from dataclasses import dataclass

from ..ledger import State
from ..status import Progress

__all__ = ["ENDED_STATES", "WorkloadStatus", "is_ended", "is_known"]

#: states a workload does not leave (``wait`` returns on them): the scheduler's final states,
#: and ``refused`` (a scheduler that would not run it)
ENDED_STATES = frozenset({s.value for s in State if s.finished} | {"refused"})


def is_ended(state: str) -> bool:
    """True for an ended workload. A state this version does not know is not ended: Redis's
    ``state`` is plain, so a Redis writer's made-up one must not end a wait with forged counts
    (the wait goes on until a final state, or its timeout)."""
    return state in ENDED_STATES


def is_known(state: str) -> bool:
    """True for a state this version knows (ended or under way); any other came from a newer
    scheduler or a Redis writer, and a snapshot showing it is not verified."""
    return state in ENDED_STATES or state in _UNDER_WAY


#: the states of a workload that has not ended (``?``: Redis holds no state for it yet)
_UNDER_WAY = frozenset({s.value for s in State if not s.finished} | {"packed", "submitted", "?"})


@dataclass(frozen=True)
class WorkloadStatus:
    """Where a workload stands. ``state`` is a plain string (``packed``, ``submitted``,
    ``running``, ``paused``, ``cancelling``, ``consolidating``, ``done``, ``failed``,
    ``cancelled``, or one a newer scheduler adds); ``total`` is None while the data is still
    being read. Once it ended, the counts are its sealed summary's when the KEK opens it
    (``verified`` True), else Redis's own (``verified`` False)."""

    workload: str
    state: str
    total: int | None
    done: int
    failed: int
    processing: int
    retrying: int
    queued: int
    #: records that never ran (a cancelled workload)
    never_ran: int
    #: records per second over the time the processors were at it
    rate: float
    #: seconds to go at that rate (None while unknown)
    eta: float | None
    started_at: float | None
    finished_at: float | None
    #: why it failed as a whole (a generic line; the sealed reason is the scheduler's log's)
    error: str | None
    verified: bool | None
    #: why an ended workload's sealed counts are not verified although its summary opened: no
    #: sealed head confirms their round (as ``rqp status`` says); "" otherwise
    round_note: str = ""

    @property
    def finished(self) -> int:
        """Records done or failed."""
        return self.done + self.failed

    @property
    def ended(self) -> bool:
        return is_ended(self.state)

    @property
    def fraction(self) -> float | None:
        if self.total is None:
            return None
        return min(1.0, self.finished / self.total) if self.total else 1.0

    @classmethod
    def not_started(cls, workload_id: str, state: str) -> WorkloadStatus:
        """A workload packed (or submitted) that no scheduler has started yet."""
        return cls(workload_id, state, None, 0, 0, 0, 0, 0, 0, 0.0, None, None, None, None, None)

    @classmethod
    def from_progress(cls, p: Progress) -> WorkloadStatus:
        return cls(
            workload=p.workload,
            state=p.state,
            total=p.total,
            done=p.done,
            failed=p.failed,
            processing=p.processing,
            retrying=p.retrying,
            queued=p.queued,
            never_ran=p.never_ran,
            rate=p.rate,
            eta=p.eta,
            started_at=p.started_at,
            finished_at=p.finished_at,
            error=p.error,
            verified=p.verified,
            round_note=p.round_note,
        )
