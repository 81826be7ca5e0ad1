"""A refused submission, recorded where the submitter looks: ``rqp status``/``rqp list``/the
console read ``rqp:refused`` (``rqp.ledger.Refusal``) and the events queue gets a ``refused``
event. Before, the reason ("not a trusted signer", "tampered with", ...) was only in this
process's log, and the workload looked packed and waiting forever.

Nothing here decides anything: the scheduler never reads a refusal back, and a workload it can
open runs (and its refusal is removed) whatever Redis says.
"""

from __future__ import annotations

import logging
import time

import redis

from rqp.backends import Backends
from rqp.errors import RqpError
from rqp.identity import process_identity
from rqp.ledger import Ledger, clear_refusal, manifest_sha256, record_refusal
from rqp.messages import make_refusal
from rqp.workload import blob_name

__all__ = ["Refusals"]

log = logging.getLogger("rqp.scheduler")


class Refusals:
    """Records the refusals of one scheduler's submissions."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        self.me = process_identity()

    def refused(self, workload_id: str, exc: RqpError) -> None:
        """``workload_id`` could not be started for ``exc``: recorded, unless Redis already holds
        its state (a workload that ran, or failed as a whole, says so through its own state).
        Recording is best effort: a refusal is never a reason for another error."""
        b = self.backends
        try:
            r = b.redis
            if Ledger(r, workload_id).exists():
                return
            try:
                manifest = manifest_sha256(b.blobs.get(blob_name(workload_id, "manifest.json")))
            except (RqpError, ValueError):
                manifest = None
            now = time.time()
            if not record_refusal(r, workload_id, str(exc), exc.exit_code, self.me, manifest, now):
                log.warning("workload %s: refusal not recorded in Redis: too many kept already", workload_id)
                return
            queue = b.settings.events_queue
            b.queue.send(queue, make_refusal(queue, workload_id, str(exc), now)[1])
        except (RqpError, redis.RedisError, ValueError) as again:
            log.warning("workload %s: its refusal could not be recorded (%s)", workload_id, again)

    def started(self, workload_id: str) -> None:
        """It runs (or ended before): an earlier refusal of it is history."""
        try:
            clear_refusal(self.backends.redis, workload_id)
        except redis.RedisError as exc:
            log.warning("workload %s: its earlier refusal could not be cleared (%s)", workload_id, exc)
