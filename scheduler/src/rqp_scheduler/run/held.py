"""The held path: while a workload is paused or cancelling nothing new is queued, and the chunks
not yet started are taken off the RQ queue (parked: they stay pending, with their specs) until it
resumes -- or, when cancelling, dropped."""

from __future__ import annotations

import logging

from rqp.jobs import JSONSerializer, RqpJob
from rqp.ledger import ChunkKind, JobId

from .context import RunContext
from .jobs import in_queues

__all__ = ["Held"]

log = logging.getLogger("rqp.scheduler")


class Held:
    """Parks and unparks ``ctx``'s queued chunks; drops them on cancel."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        #: queued jobs are off the RQ queue (the workload was paused or cancelling)
        self.parked = False

    def park(self) -> None:
        """Take the chunks not yet started off the RQ queue (they stay pending, with their specs)."""
        ctx = self.ctx
        queued = ctx.ledger.queued()
        if queued:
            pipe = ctx.r.pipeline(transaction=False)
            for jid in queued:
                for q in ctx.queues.values():
                    q.remove(jid, pipeline=pipe)
            pipe.execute()
        if not self.parked:
            log.info("workload %s: paused: %d queued chunks held back", ctx.id, len(queued))
        self.parked = True

    def unpark(self) -> None:
        """Put the parked chunks back on the queue of the workload's (current) priority."""
        ctx = self.ctx
        queued = ctx.ledger.queued()
        in_queue = in_queues(ctx)
        queue = ctx.queues[ctx.priority]
        pipe = ctx.r.pipeline(transaction=False)
        for jid in queued:
            if jid not in in_queue:
                queue.push_job_id(jid, pipeline=pipe)
        pipe.execute()
        self.parked = False
        log.info("workload %s: resumed: %d chunks queued again", ctx.id, len(queued))

    def drop(self) -> None:
        """Cancelling: the chunks not started and the retries not yet due are dropped."""
        ctx = self.ctx
        for jid in ctx.ledger.queued():
            sealed = ctx.ledger.reclaim(jid)
            job = RqpJob.fetch_many([jid], connection=ctx.r, serializer=JSONSerializer)[0]
            if job is not None:
                job.delete(remove_from_queue=True)
            if sealed is not None and ChunkKind.of(JobId.parse(jid).chunk) is ChunkKind.DATA:
                pipe = ctx.r.pipeline(transaction=True)
                ctx.ledger.retire_chunk(pipe, JobId.parse(jid).chunk, [], requeued=False)
                pipe.execute()
        ctx.ledger.drop_all_retries()
