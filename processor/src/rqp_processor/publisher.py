"""A worker's status messages, published off its chunks' critical path when the queue is remote.

A chunk's status messages enter the Redis outbox in the chunk's COMMIT, in the same transaction as
the statuses they announce (``rqp.ledger``'s outbox). From then on they are delivered whatever
happens to this worker: a scheduler publishes what a crashed or slow process leaves behind
(``flush_outbox``: entries older than a few seconds on every pass, all of them when a workload
ends). Publishing them is not part of the commit, only a prompt first try.

On the coordinating Redis (the local backend's queue) that try is a few commands and stays inline.
On Azure Queue Storage each message is a request of its own -- milliseconds of client and server
CPU plus the network's round trip -- that a worker used to wait for before taking its next chunk.
``StatusPublisher`` hands them to one thread instead, which publishes while the worker runs its
next chunk. What is handed over while a publish is under way goes out in the next one, together
(one outbox read, the sends in parallel, one outbox delete for all of them), so a message waits at
most for the publish before it. The messages themselves are unchanged: each is the sealed envelope
the commit wrote, sent as it is.

Bounded: at most ``BACKLOG_MESSAGES`` ids wait; past that the oldest are left to the outbox's
flush (delivered later, never lost), and a worker that stops publishes what waits for up to
``CLOSE_TIMEOUT`` seconds, leaving the rest in the outbox likewise.
"""

from __future__ import annotations

import logging
import os
import threading

import redis

from rqp.errors import RqpError
from rqp.ledger import publish_outbox
from rqp.storage import MessageQueue

__all__ = ["BACKLOG_MESSAGES", "CLOSE_TIMEOUT", "StatusPublisher"]

log = logging.getLogger("rqp.processor")

#: message ids waiting for the publishing thread at most (a chunk has one or a few); past this
#: the oldest are left to the outbox's flush: a queue that takes nothing for a while (an outage
#: the retry policy rides out) holds no worker and no unbounded memory
BACKLOG_MESSAGES = 1024
#: seconds a stopping worker spends publishing what still waits (the rest stays in the outbox):
#: within the margin an evicted VM's processor keeps (``rqp.config.DEFAULT_DRAIN_MARGIN_SECONDS``)
CLOSE_TIMEOUT = 5.0


class StatusPublisher:
    """Publishes the outbox entries of committed chunks: inline for a queue on Redis, on a thread
    of its own for a remote one (``MessageQueue.remote``; see the module's docstring)."""

    def __init__(
        self,
        r: redis.Redis,
        mq: MessageQueue,
        *,
        background: bool | None = None,
        backlog: int = BACKLOG_MESSAGES,
    ) -> None:
        self.r = r
        self.mq = mq
        self.background = mq.remote if background is None else background
        self.backlog = max(1, backlog)
        self._pending: list[str] = []
        self._busy = False
        self._stopping = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._thread_pid = 0
        #: publishes done (each for every id waiting when it began): for tests and metrics
        self.publishes = 0
        #: ids left to the outbox's flush because the backlog was full
        self.left_to_outbox = 0

    def publish(self, mids: list[str]) -> None:
        """Publish the outbox entries ``mids`` (committed already): now, or soon on the thread."""
        if not mids:
            return
        if not self.background:
            self._publish(mids)
            return
        with self._cond:
            if self._thread is None or self._thread_pid != os.getpid() or not self._thread.is_alive():
                # first use, or a forked child: the parent's thread does not exist here
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="rqp-status-publisher", daemon=True)
                self._thread_pid = os.getpid()
                self._thread.start()
            self._pending.extend(mids)
            excess = len(self._pending) - self.backlog
            if excess > 0:
                del self._pending[:excess]
                if not self.left_to_outbox:
                    log.warning(
                        "status messages wait faster than queue %s takes them; the oldest are left in the outbox, "
                        "for the scheduler to publish", self.mq.location,
                    )  # fmt: skip
                self.left_to_outbox += excess
            self._cond.notify_all()

    def _publish(self, mids: list[str]) -> None:
        try:
            publish_outbox(self.r, self.mq, mids)
        except (RqpError, redis.RedisError) as exc:  # left in the outbox; the scheduler publishes them later
            log.warning("%d status message(s) stay in the outbox: %s", len(mids), exc)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._stopping)
                if not self._pending:
                    return  # stopping, nothing left
                batch, self._pending = self._pending, []
                self._busy = True
            try:
                self._publish(batch)
            except Exception:  # never a dead publisher: what it held stays in the outbox
                log.exception("publishing %d status message(s) failed; they stay in the outbox", len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self.publishes += 1
                    self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every id handed over so far was published (or left in the outbox); False
        if ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Publish what waits (for up to ``timeout`` seconds) and end the thread."""
        with self._cond:
            thread = self._thread if self._thread_pid == os.getpid() else None
            self._stopping = True
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
