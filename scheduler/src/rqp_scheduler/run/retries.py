"""Retries: failed records whose backoff is due go out again in retry chunks; and ``rqp retry``
starts a new round in which the records a finished workload's summary lists as failed run again.

Only the retries a sealed commit asked for are queued: Redis is not trusted to name records.
"""

from __future__ import annotations

import logging
import time

from rqp.errors import BlobNotFoundError, IntegrityError
from rqp.ledger import ChunkKind, Head, RetryEntry, chunk_name, record_rejection
from rqp.status import FAILED, QUEUED, StatusRecord
from rqp.summary import read_summary

from ..consolidate import StateError
from .checkpoint import mark_round
from .context import RunContext
from .jobs import chunk_spec, queue_specs

__all__ = ["Retrier"]

log = logging.getLogger("rqp.scheduler")

#: forged retry entries logged one by one in ``rqp:rejected`` per step (the rest are counted)
REJECTIONS_LOGGED = 10


class Retrier:
    """Queues ``ctx``'s due retries; begins a new round for ``rqp retry``."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def queue_due(self) -> None:
        """One retry chunk of the records whose backoff is due (at most ``chunk_max``)."""
        ctx = self.ctx
        due, keys = self._asked_for(ctx.ledger.due_retries(time.time(), ctx.settings.chunk_max))
        if not due:
            return
        spec = chunk_spec(
            ctx, chunk_name(ChunkKind.RETRY, ctx.ledger.next_retry_seq()), [(e.rid, e.attempt) for e in due],
            time.time(), keys,
        )  # fmt: skip
        pipe = ctx.r.pipeline(transaction=True)
        ctx.ledger.take_retries(pipe, due)
        queue_specs(ctx, pipe, [spec], 0)
        pipe.execute()
        log.info("workload %s: retrying %d records", ctx.id, len(due))

    def _asked_for(self, due: list[RetryEntry]) -> tuple[list[RetryEntry], dict[int, str]]:
        """The retry entries a sealed commit asked for: record R's attempt A only while R's status
        record (sealed by the worker whose commit queued the retry) says "queued" after attempt
        A - 1. Any other entry was written into Redis by someone else: it is dropped and logged
        in ``rqp:rejected``, and no spec is sealed for it. Also returns the records' own ids
        (``--id-field``), from those status records."""
        ctx = self.ctx
        keys: dict[int, str] = {}
        if not due:
            return due, keys
        good, forged = [], []
        for e, sealed in zip(due, ctx.ledger.statuses([e.rid for e in due]), strict=True):
            try:
                st = StatusRecord.open(ctx.workload, e.rid, sealed) if sealed is not None else None
            except IntegrityError:
                st = None
            if st is not None and st.state == QUEUED and st.attempts == e.attempt - 1:
                good.append(e)
                if st.key is not None:
                    keys[e.rid] = st.key
            else:
                forged.append(e)
        if forged:
            ctx.ledger.drop_retries([e.member for e in forged])
            for e in forged[:REJECTIONS_LOGGED]:
                record_rejection(
                    ctx.r, job=f"retry {e.member}", workload=ctx.id, worker=ctx.me,
                    reason=f"retry of record {e.rid} (attempt {e.attempt}) of workload {ctx.id} was not asked for by "
                    f"a sealed commit (written into Redis by someone else); dropped",
                )  # fmt: skip
            log.error("workload %s: %d retry entries no commit asked for were dropped", ctx.id, len(forged))
        return good, keys

    def begin_round(self, closed: Head) -> None:
        """``rqp retry``: the records the sealed summary lists as failed run again, as first
        attempts of a new round -- the summary, not Redis, says which."""
        ctx = self.ctx
        try:
            failures = read_summary(ctx.store, ctx.workload).failures
        except BlobNotFoundError:
            raise StateError(ctx.id, "its head says finished, but it has no summary") from None
        ids = [f.id for f in failures]
        if len(set(ids)) != len(ids) or any(type(i) is not int or not 0 <= i < (closed.total or 0) for i in ids):
            # sealed under the data key, which processors hold: junk there is one line, nothing queued
            # (a negative id reached Redis as "unexpected ResponseError"; ninth review, G6)
            raise IntegrityError(
                f"workload {ctx.id}: the ended round's summary lists failed records that are not its records "
                f"(repeated, or outside 0..{(closed.total or 0) - 1}: re-sealed behind rqp's back): nothing was "
                "queued; put back that round's summary.enc from a backup"
            )
        head = Head(closed.enqueued, closed.chunks, closed.total, closed.round + 1)
        mark_round(ctx.store, ctx.workload, head.round)  # what a resume goes by if Redis is lost
        now = time.time()
        note = f"queued again by 'rqp retry' (round {head.round})"
        # a record refused at enqueue (no id in the --id-field, or a record the parser refused:
        # attempts 0) never ran and has no payload stored to run from: the same data refuses it
        # again, so it stays failed with its reason, its status sealed again (the round's end
        # reads it, and the ended round's may have expired) -- queued, it failed the whole retry
        # round when other failed records had keys (ninth review, G8)
        again = [f for f in failures if not f.refused_when_read]
        refused = [f for f in failures if f.refused_when_read]
        queued = [
            (
                f.id,
                ctx.workload.seal(
                    "status", f.id, StatusRecord(ctx.id, f.id, QUEUED, 0, note, now, key=f.key).to_json()
                ),
            )
            for f in again
        ]
        kept = [
            (f.id, ctx.workload.seal("status", f.id, StatusRecord(ctx.id, f.id, FAILED, 0, f.error, now, None, now, ctx.me, None, f.key).to_json()))
            for f in refused
        ]  # fmt: skip
        pipe = ctx.r.pipeline(transaction=True)
        ctx.ledger.new_round(pipe, head.seal(ctx.workload), queued, now)
        if kept:
            ctx.ledger.keep_failed(pipe, kept)
        pipe.execute()
        log.info(
            "workload %s: round %d: %d failed records queued again%s", ctx.id, head.round, len(again),
            f" ({len(refused)} refused when read are not: the same data refuses them again)" if refused else "",
        )  # fmt: skip
