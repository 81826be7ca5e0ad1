"""Handing a chunk back at once, and noticing a commit that Redis lost.

``hand_back`` ends the lease of a chunk this worker holds or held: the scheduler's next reclaim
pass (about a second) re-runs it as a lost worker's chunk -- no attempt of its records spent --
instead of waiting ``RQP_LEASE_SECONDS`` for the lease to run out. Whoever must let go of a chunk
without failing it calls it (a commit found lost, a worker about to be evicted).

``CommitWatch`` finds commits Redis lost: after a restart from an older snapshot or a failover to
an asynchronous replica, a chunk this worker committed a moment ago is back in the workload's
pending set (its commit removed it), under a lease deadline this worker wrote. Its records are
not done any more, and that lease will never be renewed: it is handed back. A chunk back in
pending under any other score is left alone -- +inf: the start was lost too and its RQ job is
back in the queue, to run as it is; another deadline: another worker runs it now (RQ handed the
replayed job out again), and ending that lease would only throw its work away. The watch
remembers each commit for one lease (past that the lease has run out anyway) and looks once a
second, one pipelined round trip for all of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import redis

from rqp.ledger import Ledger

__all__ = ["WATCH_INTERVAL", "CommitWatch", "hand_back"]

log = logging.getLogger("rqp.processor")

#: seconds between two looks for lost commits
WATCH_INTERVAL = 1.0


def hand_back(ledger: Ledger, jid: str, why: str) -> None:
    """End ``jid``'s lease now (only a pending job, only ever earlier): the scheduler re-runs its
    chunk within a reclaim pass, as a lost worker's (no attempt spent). Nothing happens when the
    job is no longer pending (it committed, or was reclaimed already)."""
    ledger.end_lease(jid, time.time())
    log.warning("workload %s: job %s handed back for an immediate re-run: %s", ledger.id, jid, why)


class CommitWatch(threading.Thread):
    """Hands back the chunks whose commit Redis lost (see the module's docstring)."""

    def __init__(self, r: redis.Redis, remember_seconds: float, interval: float = WATCH_INTERVAL) -> None:
        super().__init__(name="rqp-commit-watch", daemon=True)
        self.r = r
        self.remember = remember_seconds
        self.interval = interval
        #: (when committed, ledger, job id, the lease deadlines this worker wrote for it), oldest first
        self._recent: deque[tuple[float, Ledger, str, list[float]]] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        #: how many commits this watch found lost (for tests and the log)
        self.found = 0

    def committed(self, ledger: Ledger, jid: str, deadlines: list[float]) -> None:
        """``jid`` committed, its lease having had ``deadlines`` (START's, then each renewal's)."""
        with self._lock:
            self._recent.append((time.monotonic(), ledger, jid, deadlines))

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.check()
            except redis.RedisError as exc:  # Redis away (restarting?): look again next time
                log.debug("commit watch: %s", exc)
            except Exception:  # never a dead watch: a lost commit then waits for its lease, as before
                log.exception("commit watch: unexpected error; looking again in %.0f s", self.interval)

    def check(self) -> list[str]:
        """Look once; the job ids found lost (and handed back)."""
        horizon = time.monotonic() - self.remember
        with self._lock:
            while self._recent and self._recent[0][0] < horizon:
                self._recent.popleft()
            recent = list(self._recent)
        if not recent:
            return []
        pipe = self.r.pipeline(transaction=False)
        for _, ledger, jid, _ in recent:
            pipe.zscore(ledger.k.pending, jid)
        scores = pipe.execute()
        lost = [
            (ledger, jid)
            for (_, ledger, jid, mine), score in zip(recent, scores, strict=True)
            if score is not None and float(score) in mine
        ]
        for ledger, jid in lost:
            hand_back(ledger, jid, "its commit is gone from Redis (a rollback or a failover lost it)")
        if lost:
            self.found += len(lost)
            gone = {jid for _, jid in lost}
            with self._lock:
                self._recent = deque(e for e in self._recent if e[2] not in gone)
        return [jid for _, jid in lost]

    def stop(self) -> None:
        self._stopping.set()
