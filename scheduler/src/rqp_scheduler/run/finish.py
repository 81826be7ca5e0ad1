"""Finishing and announcing: the workload's events (started, progress, failed, done, cancelled),
failing it as a whole, and -- once every record is done or failed, or a cancel has drained -- its
results consolidated into the sealed summary (and the previous generation of a re-packed workload,
kept readable until then, deleted)."""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Generator
from typing import cast

from rqp import sandbox
from rqp.errors import BlobNotFoundError, RqpError
from rqp.ledger import Head, State, flush_outbox, outbox_add, publish_outbox
from rqp.messages import make_envelope
from rqp.records import Limits
from rqp.results_signer import open_results_signer
from rqp.signing import SigningKey
from rqp.status import read_progress
from rqp.summary import Summary, read_summary
from rqp.workload import SHRED_BYTES, SHRED_MARKER, SUPERSEDED, blob_name

from ..consolidate import Holder, consolidate
from .context import RunContext

__all__ = ["SCRIPT_FAILED", "Finisher"]

log = logging.getLogger("rqp.scheduler")

SCRIPT_FAILED = "the workload's script failed to load (details are encrypted: run 'rqp status' with the KEK, or see the scheduler's log)"
SECONDS_PER_DAY = 86400


class Finisher:
    """Publishes ``ctx``'s events, fails it, finishes it."""

    def __init__(self, ctx: RunContext, hosts: sandbox.HostFactory | None = None) -> None:
        self.ctx = ctx
        #: the script hosts a ``--format script`` workload's ``parse()`` runs in again at the end,
        #: for its records' input digests (``rqp.results_root``)
        self.hosts = hosts
        #: the "started" event's send on a remote queue, still under way (``event``)
        self._sending: threading.Thread | None = None

    def event(self, kind: str, data: dict[str, object], durable: bool = False, background: bool = False) -> None:
        """Publish an event on the events queue; ``durable`` ones go through the outbox (a
        progress event that cannot be sent is only logged). ``background`` (the "started"
        event): on a queue that is another service (``MessageQueue.remote``: Azure, where its
        send is a round trip or three, the first creating the queue) it is sent on a thread, off
        the start's critical path; it may then arrive after the first records' statuses, never
        after this workload's next event, whose send waits for it first."""
        self.wait_sent()
        ctx = self.ctx
        payload = {"event": kind, "workload": ctx.id, "at": time.time(), **data}
        message = make_envelope(ctx.workload, ctx.settings.events_queue, "event", payload)
        if background and not durable and ctx.mq.remote:
            # not a daemon: an interpreter that exits waits for the send (bounded by its timeouts)
            self._sending = threading.Thread(
                target=self._send_quietly, args=(kind, message[1]), name=f"rqp-event-{kind}", daemon=False
            )
            self._sending.start()
        elif durable:
            pipe = ctx.r.pipeline(transaction=True)
            outbox_add(pipe, ctx.settings.events_queue, [message])
            pipe.execute()
            publish_outbox(ctx.r, ctx.mq, [message[0]])
        else:
            self._send(kind, message[1])

    def _send(self, kind: str, body: bytes) -> None:
        try:
            self.ctx.mq.send(self.ctx.settings.events_queue, body)
        except RqpError as exc:
            log.warning("%s event not published: %s", kind, exc)

    def _send_quietly(self, kind: str, body: bytes) -> None:
        """``_send`` on its own thread: whatever goes wrong is one line in the log, never a traceback."""
        try:
            self._send(kind, body)
        except Exception as exc:  # noqa: BLE001 - a progress event is never worth more than a line
            log.warning(
                "%s event not published: %s", kind, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            )

    def wait_sent(self) -> None:
        """Wait for an event sent in the background (``event``), so events keep their order."""
        sending, self._sending = self._sending, None
        if sending is not None:
            sending.join()

    def progress(self) -> None:
        p = read_progress(self.ctx.r, self.ctx.id)
        if p is not None:
            self.event(
                "progress",
                {
                    "done": p.done,
                    "failed": p.failed,
                    "total": p.total,
                    "enqueued": p.enqueued,
                    "rate": round(p.rate, 1),
                },
            )

    def fail(self, error: str, generic: str | None = None) -> None:
        """The workload failed as a whole. ``error`` may quote the user's script or data: only its
        sealed form goes to Redis, with ``generic`` (a line that quotes neither) in clear."""
        ctx = self.ctx
        sealed = base64.b64encode(ctx.workload.seal("error", "", error.encode())).decode()
        ctx.ledger.fail(generic=generic or SCRIPT_FAILED, sealed=sealed, now=time.time())
        self.event("failed", {"error": error}, durable=True)
        ctx.lock.release()

    def drop_superseded(self) -> None:
        """The previous generation of a re-packed workload (``rqp.workload.supersede``) was kept
        readable until this one's summary is written: now it goes -- its wrapped key shredded
        first when the packer asked for that (``--shred-previous``)."""
        ctx = self.ctx
        prefix = blob_name(ctx.id, SUPERSEDED)
        names = list(ctx.store.list(prefix))
        if not names:
            return
        if prefix + SHRED_MARKER in names and prefix + "key.json" in names:
            key = prefix + "key.json"
            ctx.store.put(key, os.urandom(max(SHRED_BYTES, ctx.store.size(key))))
        for name in names:
            ctx.store.delete(name)
        log.info("workload %s: its superseded generation was deleted (this one's results replace it)", ctx.id)

    def _cancelled_before(self) -> int | None:
        """The records never read of the cancelled round a ``rqp retry --failed`` round follows
        (its sealed summary, still the current one), so this round ends cancelled too, with the same
        total and the same records never run; None when the round before was not cancelled."""
        ctx = self.ctx
        head = ctx.head
        if head.round < 2 or head.total is None:
            return None
        try:
            before = read_summary(ctx.store, ctx.workload)
        except BlobNotFoundError:
            return None
        if before.state != "cancelled":
            return None
        return max(0, before.total - head.total)

    def results_signer(self) -> SigningKey | None:
        """The key the results root is signed with (``rqp.results_root``): this scheduler's results
        key (``RQP_RESULTS_KEY_FILE`` or ``RQP_RESULTS_KEY_VAULT_ID``: ``rqp.results_signer``), else its
        operator key; None (the root stays unsigned)
        without either. Never the submitter's key, which processors may be given too."""
        return open_results_signer(self.ctx.settings)

    def _script_records(self) -> Generator[tuple[bytes, str | None], None, None] | None:
        """A ``--format script`` workload's records parsed again by its ``parse()`` in a script
        host of their own (the enqueue's parse, so the same records); None for the other formats
        (the consolidation parses those itself) or without script hosts."""
        ctx = self.ctx
        if ctx.workload.manifest.format != "script" or self.hosts is None:
            return None
        source = ctx.workload.script_source()
        return cast(
            "Generator[tuple[bytes, str | None], None, None]",
            sandbox.parse_records(self.hosts, ctx.id, source, ctx.workload.data_chunks()),
        )

    def finish(self, cancelled: bool = False, unread: int = 0) -> Summary:
        """Consolidate the results, write the summary, close the head, announce the end and
        release the lock. ``unread``: records of a cancelled workload's data never read (they count
        as never run, and in its total)."""
        ctx = self.ctx
        if not cancelled:
            carried = self._cancelled_before()
            if carried is not None:  # a retry round of a cancelled workload: what never ran still did not
                cancelled, unread = True, carried
        if not cancelled:
            ctx.ledger.set_state(State.CONSOLIDATING)
        head = ctx.head
        if cancelled and head.total is None:
            head = Head(head.enqueued, head.chunks, head.enqueued, head.round)  # what was read before the cancel
        parsed = self._script_records()
        signer = self.results_signer()
        # the run's hold: staged blobs of its own, a look at its lock before each step a reader
        # sees, and what it used up deleted only once its end is recorded (fenced) in Redis
        holder = Holder(tag=ctx.lock.generation(), check=ctx.lock.renew)
        try:
            summary = consolidate(
                ctx.ledger, ctx.store, ctx.workload, head, keep_parts=ctx.settings.keep_parts, cancelled=cancelled,
                unread=unread, signer=signer, limits=Limits.from_settings(ctx.settings),
                payloads=None if parsed is None else (payload for payload, _why in parsed), inputs=ctx.inputs,
                holder=holder,
            )  # fmt: skip
        finally:
            if parsed is not None:
                parsed.close()  # ends its script host
            close = getattr(signer, "close", None)
            if close is not None:
                close()  # a Key Vault signer's HTTP clients and credential
        holder.check()
        self.drop_superseded()
        closed = Head(head.enqueued, head.chunks, head.total, head.round, closed=True)
        ctx.ledger.finish(
            finished_at=summary.finished_at, results_sha256=summary.results.sha256,
            ttl=ctx.settings.status_ttl_days * SECONDS_PER_DAY, keep_records=bool(summary.failed or summary.cancelled),
            sealed_head=closed.seal(ctx.workload), state=State.CANCELLED if cancelled else State.DONE,
        )  # fmt: skip
        ctx.head = closed
        for used_up in holder.after_end:  # the end is recorded: nothing of them is read again
            try:
                used_up()
            except RqpError as exc:  # the workload is done all the same: what is left is garbage
                log.warning(
                    "workload %s: its used-up blobs (parts, input digests) were not all deleted: %s", ctx.id, exc
                )
        self.event(
            "cancelled" if cancelled else "done",
            {
                "total": summary.total,
                "done": summary.done,
                "failed": summary.failed,
                "elapsed": summary.elapsed,
                "records_per_second": summary.records_per_second,
                "cancelled": summary.cancelled,
            },
            durable=True,
        )
        flush_outbox(ctx.r, ctx.mq, older_than=0)
        ctx.lock.release()
        log.info(
            "workload %s: %s: %d done, %d failed, %d not run in %.1fs (%.0f records/s)",
            ctx.id, "cancelled" if cancelled else "done", summary.done, summary.failed, summary.cancelled,
            summary.elapsed, summary.records_per_second,
        )  # fmt: skip
        return summary
