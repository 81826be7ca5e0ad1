"""Reading a workload's consolidated results: the summary of its generation, and its result
lines, decrypted and checked against that summary's size and digest. The ``rqp results`` command
and the Python API (``rqp.Workload.results``) both read through here."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from .crypto import aad, decrypt_stream
from .errors import IntegrityError
from .ledger import Ledger
from .status import StatusRecord
from .storage import BlobStore
from .summary import SUMMARY_BLOB, Failure, Summary, read_summary
from .workload import Workload

__all__ = ["FAILURE_BATCH", "failures_so_far", "generation_summary", "read_results"]

#: failed records' statuses read per round trip
FAILURE_BATCH = 1000


def generation_summary(store: BlobStore, workload: Workload, sha256: str | None = None) -> Summary:
    """The summary of ``workload``'s generation: the current one's (``rqp.summary.read_summary``)
    or, for the superseded generation of a re-packed workload, the one kept beside it --
    ``sha256`` given: only when its bytes are exactly those (``Manifest.supersedes`` of the
    generation that replaced it, which names the round it ended at), read once, so a blob-store
    writer cannot show another generation or an earlier round of it; ``IntegrityError`` otherwise."""
    if not workload.generation:
        return read_summary(store, workload)
    raw = store.get(workload.blob(SUMMARY_BLOB))
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise IntegrityError(
            f"workload {workload.id}: superseded/{SUMMARY_BLOB} is not the summary the current generation's signed "
            f"manifest says it replaced (another generation, or an earlier round of it, put there in the blob store); "
            f"not shown -- 'rqp results {workload.id}' once the current generation has finished"
        )
    return Summary.from_json(workload.open_sealed("summary", "", raw), workload.id)


def read_results(store: BlobStore, workload: Workload, summary: Summary | None = None) -> Iterator[bytes]:
    """Yield result lines (bytes, JSON) after checking the results blob against the summary
    (``summary``: the one the caller already read and checked the round of, never read twice)."""
    info = (summary or generation_summary(store, workload)).results
    # a superseded generation's results were moved beside its summary (``rqp.workload.supersede``)
    blob = info.blob if not workload.generation else workload.blob(info.blob.rpartition("/")[2])
    if store.size(blob) != info.size:
        raise IntegrityError(
            f"results of workload {workload.id} are {store.size(blob)} bytes but the summary says {info.size}: truncated or replaced"
        )
    rest = b""
    digest = hashlib.sha256()

    def hashed() -> Iterator[bytes]:
        for c in store.iter_chunks(blob):
            digest.update(c)
            yield c

    for piece in decrypt_stream(
        workload.key, hashed(), aad("results", workload.id), f"results of workload {workload.id}"
    ):
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest
    if digest.hexdigest() != info.sha256:
        raise IntegrityError(
            f"results of workload {workload.id} do not match the digest in its summary: replaced; re-run 'rqp-scheduler run {workload.id}'"
        )


def failures_so_far(ledger: Ledger, workload: Workload) -> list[Failure]:
    """A workload's records failed for good until now, with their reasons, from their sealed
    status records (read in batches): what a running workload's failures are before its summary
    lists them. Not final: a retry round may still run them again."""
    ids = ledger.failed_ids()
    out = []
    for i in range(0, len(ids), FAILURE_BATCH):
        batch = ids[i : i + FAILURE_BATCH]
        for rid, sealed in zip(batch, ledger.statuses(batch), strict=True):
            if sealed is None:
                out.append(Failure(rid, "status record missing", None))
                continue
            st = StatusRecord.open(workload, rid, sealed)
            out.append(Failure(rid, st.error, st.attempts, st.key))
    return out
