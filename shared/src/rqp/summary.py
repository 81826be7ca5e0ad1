"""A finished workload's summary: counts, timings, the results object it vouches for, and the
failures with their reasons. Written sealed (``summary.enc``) by the scheduler, read by
``rqp results`` and anyone holding the KEK."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import IntegrityError
from .storage import BlobStore
from .workload import Workload, blob_name

__all__ = ["RESULTS_BLOB", "SUMMARY_BLOB", "Failure", "ResultsInfo", "Summary", "read_summary"]

SUMMARY_BLOB = "summary.enc"
RESULTS_BLOB = "results.enc"


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


def read_summary(store: BlobStore, workload: Workload) -> Summary:
    """The workload's summary, authenticated (``BlobNotFoundError`` while it is unfinished)."""
    raw = store.get(blob_name(workload.id, SUMMARY_BLOB))
    return Summary.from_json(workload.open_sealed("summary", "", raw), workload.id)
