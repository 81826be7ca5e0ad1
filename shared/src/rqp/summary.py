"""A finished workload's summary: counts, timings, the results object it vouches for, and the
failures with their reasons. Written sealed (``summary.enc``) by the scheduler, read by
``rqp results`` and anyone holding the KEK."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import IntegrityError
from .storage import BlobStore
from .workload import Workload, blob_name

__all__ = [
    "RESULTS_BLOB",
    "SUMMARY_BLOB",
    "UNRECORDED_ROUND",
    "Failure",
    "MarkerFloor",
    "ResultsInfo",
    "RoundSource",
    "StaleSummaryError",
    "Summary",
    "check_round",
    "read_summary",
]

SUMMARY_BLOB = "summary.enc"
RESULTS_BLOB = "results.enc"
#: the round a summary from before rounds were sealed into it is taken to be: the first, so it
#: stays readable exactly while the workload's sealed head says round 1
UNRECORDED_ROUND = 1

#: where a reader learns the workload's current round: ``(round, closed)`` of its sealed head
#: (``rqp.ledger.Head``, authenticated under the data key), None when Redis holds no head
RoundSource = Callable[[], "tuple[int, bool] | None"]


class MarkerFloor(tuple[int, bool]):
    """A ``RoundSource`` answer taken from the sealed round marker (``round.enc``: round R was
    begun, so R-1 at least is current) where Redis holds no sealed head, or an older one:
    ``check_round`` then names the marker, not a head that is not there (it would send an
    operator to Redis)."""


class StaleSummaryError(IntegrityError):
    """A genuine summary of an earlier round than the workload's sealed head says: a blob-store
    writer put back an older ``summary.enc`` (with its results, leaves and inputs)."""


@dataclass(frozen=True)
class ResultsInfo:
    """The consolidated results object: where it is, its size and digest, how many results."""

    blob: str
    size: int
    sha256: str
    count: int


@dataclass(frozen=True)
class Failure:
    id: int
    error: str | None
    attempts: int | None
    #: the data's own id of the record (``rqp pack --id-field``)
    key: str | None = None

    @property
    def refused_when_read(self) -> bool:
        """Refused as the data was read (no id in the ``--id-field``): it never ran (attempts 0),
        and the same data refuses it again, so ``rqp retry --failed`` leaves it failed."""
        return self.attempts == 0


@dataclass
class Summary:
    workload: str
    total: int
    done: int
    failed: int
    started_at: float
    finished_at: float
    elapsed: float
    records_per_second: float
    chunks: int
    reclaimed_chunks: int
    results: ResultsInfo
    failures: list[Failure] = field(default_factory=list)
    #: records that never ran: the workload was cancelled (``rqp cancel``) before they did
    cancelled: int = 0
    #: how it ended: "done" or "cancelled" ("" in summaries from before it was recorded)
    state: str = ""
    #: the signed results root (``rqp.results_root.Attestation.to_dict``); None in summaries from
    #: before it was recorded
    root: dict[str, Any] | None = None
    #: records requeued because their chunk was handed back by a draining processor (a Spot
    #: eviction, a scale-in, SIGTERM): no attempt of theirs was spent (plain in Redis until sealed here)
    requeued_after_preemption: int = 0
    #: processor-seconds the committed chunks took, by VM (host name), from their sealed notes
    processor_seconds_by_vm: dict[str, float] = field(default_factory=dict)
    #: each of those VMs' priority as its processor said ("spot", "regular", "" unknown; plain)
    vm_priority: dict[str, str] = field(default_factory=dict)
    #: processor-seconds lost by VM: chunks its drains (evictions, SIGTERM) handed back had run
    #: that long before they were stopped, to re-run whole elsewhere (plain in Redis until sealed)
    drained_seconds_by_vm: dict[str, float] = field(default_factory=dict)
    #: the round it ends (1, then one more per ``rqp retry --failed``), as the sealed head said
    #: when it was written; 0 in summaries from before it was recorded (``UNRECORDED_ROUND``)
    round: int = 0

    def retry_counts(self) -> tuple[int, int]:
        """(failed records ``rqp retry --failed`` runs again, failed records it leaves: refused
        when read)."""
        refused = sum(1 for f in self.failures if f.refused_when_read)
        return max(self.failed, len(self.failures)) - refused, refused

    @property
    def sealed_round(self) -> int:
        return self.round or UNRECORDED_ROUND

    @property
    def final_state(self) -> str:
        return self.state or ("cancelled" if self.cancelled else "done")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), allow_nan=False).encode()  # strict JSON: no Infinity/NaN

    @classmethod
    def from_json(cls, raw: bytes, workload_id: str) -> Summary:
        try:
            doc: dict[str, Any] = json.loads(raw)
            doc["results"] = ResultsInfo(**doc["results"])
            doc["failures"] = [Failure(**f) for f in doc.get("failures", [])]
            return cls(**doc)
        except (ValueError, TypeError, KeyError) as exc:
            raise IntegrityError(
                f"summary of workload {workload_id} is not an rqp summary ({exc}); re-run 'rqp-scheduler run {workload_id}'"
            ) from None

    def seal(self, workload: Workload) -> bytes:
        return workload.seal("summary", "", self.to_json())


def check_round(summary: Summary, workload_id: str, head: tuple[int, bool] | None) -> Summary:
    """``summary`` when it is of the workload's current round, as its sealed head ``head``
    (round, closed) tells: the head's round once closed, else (a round running) at least the one
    before. ``StaleSummaryError`` naming both rounds otherwise. No head (Redis lost or never
    told): nothing to compare with, the summary is taken as it is."""
    if head is None:
        return summary
    current, closed = head
    expected = current if closed else current - 1
    if summary.sealed_round < expected:
        found = f"round {summary.sealed_round}" + ("" if summary.round else " (written before rounds were recorded)")
        says = (
            f"the sealed round marker (round.enc) says round {current} was begun (no sealed head in Redis says "
            f"otherwise), so round {expected} at least"
            if isinstance(head, MarkerFloor)
            else f"the workload's sealed head says round {expected}"
        )
        raise StaleSummaryError(
            f"workload {workload_id}: {SUMMARY_BLOB} is {found} but {says}: the blob was replaced with an older "
            f"one; put back round {expected}'s {SUMMARY_BLOB}, {RESULTS_BLOB}, leaves.bin and inputs.bin from a backup"
        )
    return summary


def read_summary(store: BlobStore, workload: Workload, *, head: RoundSource | None = None) -> Summary:
    """The workload's summary, authenticated (``BlobNotFoundError`` while it is unfinished) and
    of its current round (``check_round``): the round comes from ``head`` or, when not given,
    from the one the workload was opened with (``Workload.sealed_round``: ``rqp.backends`` sets
    it to read Redis)."""
    raw = store.get(blob_name(workload.id, SUMMARY_BLOB))
    summary = Summary.from_json(workload.open_sealed("summary", "", raw), workload.id)
    source = head if head is not None else workload.sealed_round
    return check_round(summary, workload.id, None if source is None else source())
