"""Records per second over time, from the progress counters the console reads anyway.

Redis keeps a workload's counts, not their history; the console keeps the history itself: each
time it reads a workload's progress (at most every ``min_step`` seconds) it appends
(time, records finished) to a bounded ring per workload, and a chart is the rate between
successive points. A workload first seen already under way gets one point at its start with
nothing finished, so its first rate is its average so far rather than nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

__all__ = ["ThroughputHistory"]


class ThroughputHistory:
    def __init__(self, points: int = 1800, min_step: float = 1.0, workloads: int = 200) -> None:
        self.points = points
        self.min_step = min_step
        self.workloads = workloads
        self._series: OrderedDict[str, deque[tuple[float, int]]] = OrderedDict()
        self._lock = threading.Lock()

    def add(
        self, workload: str, now: float, finished: int, started_at: float | None, live: bool, ended: float | None = None
    ) -> None:
        """Note that ``finished`` records of ``workload`` were done or failed at ``now``; only
        a ``live`` workload (one that can still change) grows its history. A finished one's last
        point is dated when it ``ended``, not when the console looked."""
        if not live and ended is not None:
            now = min(now, ended)
        with self._lock:
            q = self._series.get(workload)
            if q is None:
                if len(self._series) >= self.workloads:
                    self._series.popitem(last=False)
                q = self._series[workload] = deque(maxlen=self.points)
                if started_at is not None and started_at < now:
                    q.append((started_at, 0))
            else:
                self._series.move_to_end(workload)
            if q and (now - q[-1][0] < self.min_step or (not live and q[-1][1] == finished and len(q) > 1)):
                return
            if q and finished < q[-1][1]:
                q.clear()  # a new round (rqp retry --failed) restarts the count
            q.append((now, finished))

    def rates(self, workload: str, window: float = 5.0, limit: int | None = None) -> list[tuple[float, float]]:
        """(time, records/s over about the last ``window`` seconds) per point after the first."""
        with self._lock:
            pts = list(self._series.get(workload, ()))
        out: list[tuple[float, float]] = []
        j = 0
        for i in range(1, len(pts)):
            t, n = pts[i]
            while j < i - 1 and t - pts[j + 1][0] >= window:
                j += 1
            t0, n0 = pts[j]
            if t > t0:
                out.append((t, max(0.0, (n - n0) / (t - t0))))
        return out[-limit:] if limit else out

    def recent_rate(self, workload: str, window: float = 30.0) -> float | None:
        """Records/s over about the last ``window`` seconds; None with fewer than two points."""
        with self._lock:
            pts = list(self._series.get(workload, ()))
        if len(pts) < 2:
            return None
        t1, n1 = pts[-1]
        t0, n0 = next(((t, n) for t, n in pts if t1 - t <= window), pts[-2])
        if t1 <= t0:
            t0, n0 = pts[-2]
        return max(0.0, (n1 - n0) / (t1 - t0)) if t1 > t0 else None
