"""The console's check of a finished workload's stored results against its signed root, so the
workload page's badge says "results verified" only when both hold: a trusted results key signed
the root for this workload and its manifest, AND every stored record hashes to its leaf and the
leaves fold into that root (what ``rqp verify W`` checks, ``rqp.verification.check_rows``).

A full pass reads every result, so it runs once per (workload, root) and is kept: inline for a
workload of up to ``INLINE_RECORDS`` records (the page shows the answer at once), else in one
background thread at a time while the page says "checking N records". An answer is kept for
``RECHECK_SECONDS`` and then checked again, so results altered in the blob store after a check
turn the badge within that time; a new round (a new root) is checked afresh.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from rqp.errors import RqpError
from rqp.signing import TrustStore
from rqp.storage import BlobStore
from rqp.verification import check_rows, stored_rows
from rqp.workload import Workload

__all__ = ["CHECKING", "DIFFERS", "INLINE_RECORDS", "MATCH", "RECHECK_SECONDS", "ResultsChecks"]

#: a workload of at most this many records is checked while the page waits (about 0.1 s)
INLINE_RECORDS = 10_000
#: how long an answer is kept before the stored results are checked again
RECHECK_SECONDS = 600.0
#: answers kept (one per workload and root)
_KEEP = 256
CHECKING, MATCH, DIFFERS = "checking", "match", "differs"


class ResultsChecks:
    """Checks of stored results against signed roots, kept per (workload, root). Thread-safe."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self._answers: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()
        self._running: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        #: one background pass at a time: a console is not a verification farm
        self._one = threading.Semaphore(1)

    def state(self, workload: Workload, trust: TrustStore, root: str, size: int) -> dict[str, Any]:
        """``{"status": "checking" | "match" | "differs", "checked", "problems", "at"}`` of the
        stored results of ``workload`` against its signed root ``root`` of ``size`` records."""
        key = (workload.id, root)
        now = time.time()
        with self._lock:
            hit = self._answers.get(key)
            if hit is not None and now - hit[0] < RECHECK_SECONDS:
                return hit[1]
            if key in self._running:
                return hit[1] if hit is not None else {"status": CHECKING, "size": size}
            self._running.add(key)
        if size <= INLINE_RECORDS:
            return self._check(key, workload, trust)
        threading.Thread(
            target=self._background, args=(key, workload, trust), name=f"rqp-verify-{workload.id}", daemon=True
        ).start()
        return hit[1] if hit is not None else {"status": CHECKING, "size": size}

    def _background(self, key: tuple[str, str], workload: Workload, trust: TrustStore) -> None:
        with self._one:
            self._check(key, workload, trust)

    def _check(self, key: tuple[str, str], workload: Workload, trust: TrustStore) -> dict[str, Any]:
        try:
            return self._checked(key, workload, trust)
        finally:
            with self._lock:
                self._running.discard(key)

    def _checked(self, key: tuple[str, str], workload: Workload, trust: TrustStore) -> dict[str, Any]:
        try:
            report = check_rows(self.store, workload, trust, stored_rows(self.store, workload))
            answer: dict[str, Any] = {
                "status": MATCH if report.ok else DIFFERS,
                "checked": report.checked,
                "problems": report.problems[:5],
                "more": max(0, len(report.problems) - 5) + report.more,
            }
        except (RqpError, ValueError) as exc:  # the results do not open or match their sealed digest
            answer = {"status": DIFFERS, "checked": 0, "problems": [str(exc).split("\n")[0]], "more": 0}
        answer["at"] = time.time()
        with self._lock:
            self._answers[key] = (answer["at"], answer)
            self._answers.move_to_end(key)
            while len(self._answers) > _KEEP:
                self._answers.popitem(last=False)
        return answer
