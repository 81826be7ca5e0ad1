"""What wakes a serving scheduler's loop before its next step is due: a submission announced
(``rqp.ledger.announce_submission``) or a stop.

Why: a serving scheduler with nothing to run looked at the submissions list every 0.1 s
(``WAIT_IDLE_SERVING``), so a workload waited 50 ms on average between ``rqp submit`` and its
first read; while other workloads run it looks only as often as they step (up to ~0.5 s). Taking
a submission is a fenced write, which cannot block in Redis (a blocking pop cannot run inside the
fence's ``MULTI``), so the submitter PUBLISHes on ``SUBMITTED_CHANNEL`` after its push and a
thread here, SUBSCRIBEd to it, wakes the loop, which then looks at the list as it always does.

A message is a hint and carries nothing: the list stays the hand-over and is still polled, so a
lost message, a Redis user without the channel in its ACL (then one line says so, once) or a
subscription being re-made only costs the old wait. Anyone who may PUBLISH there can at most
make the loop look at the list more often -- one ``LLEN`` per wake, and at most one early wake
per ``WAKE_MIN_GAP``.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from rqp.ledger import SUBMITTED_CHANNEL

__all__ = ["LISTEN_SECONDS", "RESUBSCRIBE_SECONDS", "WAKE_MIN_GAP", "StopEvent", "SubmissionListener", "Wakeup"]

log = logging.getLogger("rqp.scheduler")

#: the least time between two early wake-ups: a flood of announcements costs at most this many
#: looks at the submissions list per second (1 / WAKE_MIN_GAP), never a busy loop
WAKE_MIN_GAP = 0.01
#: how long the listener blocks for a message before it looks whether it should stop
LISTEN_SECONDS = 1.0
#: how long the listener waits before subscribing again after Redis went away
RESUBSCRIBE_SECONDS = 1.0


class StopEvent(threading.Event):
    """The scheduler's stop: setting it also wakes the loop (``Wakeup``) at once."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake.set()


class Wakeup:
    """The loop's wait between steps, cut short by a stop or by an announced submission."""

    def __init__(self) -> None:
        self.event = threading.Event()
        #: set by a stop as well (``StopEvent``)
        self.stop = StopEvent(self.event)
        self._last = 0.0

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True when woken early (a submission announced, or a stop)."""
        if not self.event.wait(seconds):
            return False
        self.event.clear()
        if self.stop.is_set():
            return True
        gap = self._last + WAKE_MIN_GAP - time.monotonic()
        if gap > 0:
            self.stop.wait(gap)
        self._last = time.monotonic()
        return True


class SubmissionListener(threading.Thread):
    """SUBSCRIBEs to ``SUBMITTED_CHANNEL`` and sets ``wakeup.event`` for every message, until
    ``wakeup.stop``; re-subscribes after Redis went away (and wakes the loop then: a submission
    announced meanwhile was missed)."""

    def __init__(self, r: redis.Redis, wakeup: Wakeup) -> None:
        super().__init__(name="rqp-submission-listener", daemon=True)
        self.r = r
        self.wakeup = wakeup
        #: set once subscribed (tests wait on it)
        self.subscribed = threading.Event()

    def run(self) -> None:
        stop = self.wakeup.stop
        while not stop.is_set():
            pubsub = self.r.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(SUBMITTED_CHANNEL)
                self.subscribed.set()
                self.wakeup.event.set()  # anything announced before the subscription: look once
                while not stop.is_set():
                    if pubsub.get_message(timeout=LISTEN_SECONDS) is not None:
                        self.wakeup.event.set()
            except redis.exceptions.NoPermissionError:
                log.info(
                    "submissions are taken at the next look, not at once: this Redis user may not SUBSCRIBE "
                    "to %s ('rqp redis-acl render' shows the rules that grant it)",
                    SUBMITTED_CHANNEL,
                )
                return
            except redis.RedisError:  # gone away, or refused: the polling goes on meanwhile
                self.subscribed.clear()
                stop.wait(RESUBSCRIBE_SECONDS)
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass
