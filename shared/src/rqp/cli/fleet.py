"""``rqp fleet``: how many processors the backlog wants, for a fleet without Azure's autoscale.

The same backlog the metrics logger publishes to Azure Monitor (``rqp_metrics.backlog``), read
here from Redis, and the one formula both document:

    wanted = ceil(queued records / (records/s per processor x target drain seconds)),
    bounded to [minimum, maximum]

"Queued records" are the records of running workloads enqueued and not finished (waiting, in a
processor's chunk, or waiting out a retry's backoff): all of them still need processor time. A
paused or cancelling workload takes no chunk and wants no processor. The counts are Redis's plain
counters: a Redis writer can make the recommendation too big or too small, never beyond the
bounds, and never touches a result.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import redis
from rq import Queue, Worker

from ..config import settings_from_env
from ..errors import ConfigError
from ..ledger import fleet, unfinished
from ..status import read_progress
from .context import backends

__all__ = [
    "BACKLOG_STATES",
    "DEFAULT_DRAIN_SECONDS",
    "DEFAULT_MAX_PROCESSORS",
    "DEFAULT_MIN_PROCESSORS",
    "DEFAULT_RECORDS_PER_SECOND",
    "Backlog",
    "FleetSettings",
    "Recommendation",
    "read_backlog",
    "recommend",
    "register",
    "wanted_processors",
]

#: records/s one processor is assumed to finish when no running workload has measured a rate yet
DEFAULT_RECORDS_PER_SECOND = 5.0
#: how soon the fleet should drain the backlog it sees
DEFAULT_DRAIN_SECONDS = 600.0
DEFAULT_MIN_PROCESSORS = 0
DEFAULT_MAX_PROCESSORS = 20
#: the most records a backlog counts (2**53: exact as a float); a forged counter stops here
MAX_BACKLOG_RECORDS = 2**53
#: the workload states whose unfinished records want processors
BACKLOG_STATES = ("running",)

#: setting name -> environment variable
ENV_NAMES = {
    "records_per_second": "RQP_FLEET_RECORDS_PER_SECOND",
    "drain_seconds": "RQP_FLEET_DRAIN_SECONDS",
    "minimum": "RQP_FLEET_MIN",
    "maximum": "RQP_FLEET_MAX",
}


@dataclass(frozen=True)
class FleetSettings:
    """The formula's knobs. ``records_per_second`` 0 (unset): the running workloads' measured
    rate per processor, else ``DEFAULT_RECORDS_PER_SECOND``."""

    records_per_second: float = 0.0
    drain_seconds: float = DEFAULT_DRAIN_SECONDS
    minimum: int = DEFAULT_MIN_PROCESSORS
    maximum: int = DEFAULT_MAX_PROCESSORS

    def __post_init__(self) -> None:
        rate = self.records_per_second
        if not (math.isfinite(rate) and rate >= 0):
            raise ConfigError(
                f"RQP_FLEET_RECORDS_PER_SECOND must be records/s one processor finishes (0: measure it), got {rate}"
            )
        if not (math.isfinite(self.drain_seconds) and self.drain_seconds > 0):
            raise ConfigError(f"RQP_FLEET_DRAIN_SECONDS must be positive seconds, got {self.drain_seconds}")
        if self.minimum < 0 or self.maximum < max(1, self.minimum):
            raise ConfigError(
                f"RQP_FLEET_MIN={self.minimum} and RQP_FLEET_MAX={self.maximum} must satisfy 0 <= min <= max, max >= 1"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> FleetSettings:
        """Environment first, then explicit overrides (flags); ``None`` overrides are ignored."""
        return settings_from_env(cls, ENV_NAMES, what="fleet", env=env, overrides=overrides)


@dataclass(frozen=True)
class Backlog:
    """What the fleet faces: unfinished records of running workloads, and who works on them."""

    queued: int
    workloads: int
    #: live ``rqp-processor`` supervisors in the fleet registry (one per container or VM: what
    #: ``--scale processor=N`` and a scale set's capacity count)
    processors: int
    #: RQ worker processes registered on the queue (a processor runs RQP_WORKERS of them)
    workers: int
    #: the running workloads' throughput summed (records/s; 0 while none has measured one)
    records_per_second: float

    @property
    def per_processor(self) -> float:
        """Queued records per registered processor (all of them, with none: the metric that
        drives scale-out from zero)."""
        return self.queued / max(1, self.processors)

    @property
    def measured_rate_per_processor(self) -> float | None:
        if self.processors <= 0 or self.records_per_second <= 0:
            return None
        return self.records_per_second / self.processors


def read_backlog(r: redis.Redis, rq_queue: str) -> Backlog:
    """The backlog from Redis: each workload's progress counters (O(1) reads each), the live
    processors of the fleet registry and the RQ workers registered on ``rq_queue``. Needs only
    read access (the console's user)."""
    queued = running = 0
    rate = 0.0
    for wid in unfinished(r):  # one round trip for the states; ended workloads are not read further
        p = read_progress(r, wid)
        if p is None or p.state not in BACKLOG_STATES:
            continue
        running += 1
        queued += max(0, p.enqueued - p.done - p.failed)
        if math.isfinite(p.rate) and p.rate > 0:
            rate += p.rate
    queued = min(queued, MAX_BACKLOG_RECORDS)
    processors = len(fleet(r))
    workers = int(Worker.count(connection=r, queue=Queue(rq_queue, connection=r)))
    return Backlog(queued=queued, workloads=running, processors=processors, workers=workers, records_per_second=rate)


def wanted_processors(queued: int, records_per_second: float, drain_seconds: float, minimum: int, maximum: int) -> int:
    """The documented formula: ceil(queued / (records/s per processor x drain seconds)), bounded."""
    if queued <= 0:
        return max(minimum, 0)
    ratio = queued / (records_per_second * drain_seconds)
    want = math.ceil(ratio) if math.isfinite(ratio) else maximum  # a forged, vanishing rate: the most
    return max(minimum, min(maximum, want))


@dataclass(frozen=True)
class Recommendation:
    backlog: Backlog
    records_per_second: float
    #: "setting" (RQP_FLEET_RECORDS_PER_SECOND / --rate), "measured" or "default"
    rate_from: str
    drain_seconds: float
    minimum: int
    maximum: int
    wanted: int

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["backlog"]["per_processor"] = round(self.backlog.per_processor, 3)
        return d


def recommend(backlog: Backlog, s: FleetSettings) -> Recommendation:
    """How many processors ``backlog`` wants under ``s``."""
    if s.records_per_second > 0:
        rate, source = s.records_per_second, "setting"
    elif backlog.measured_rate_per_processor is not None:
        rate, source = backlog.measured_rate_per_processor, "measured"
    else:
        rate, source = DEFAULT_RECORDS_PER_SECOND, "default"
    wanted = wanted_processors(backlog.queued, rate, s.drain_seconds, s.minimum, s.maximum)
    return Recommendation(backlog, rate, source, s.drain_seconds, s.minimum, s.maximum, wanted)


def format_recommendation(rec: Recommendation, rq_queue: str) -> list[str]:
    b = rec.backlog
    return [
        f"backlog: {b.queued} record(s) queued in {b.workloads} running workload(s); "
        f"{b.processors} processor(s) with {b.workers} worker(s) on RQ queue {rq_queue} "
        f"({b.per_processor:.1f} per processor)",
        f"rate: {rec.records_per_second:.3g} records/s per processor ({rec.rate_from}); "
        f"target drain {rec.drain_seconds:g} s",
        f"wanted: {rec.wanted} processor(s) = ceil({b.queued} / ({rec.records_per_second:.3g} x "
        f"{rec.drain_seconds:g})), bounded to {rec.minimum}..{rec.maximum}",
    ]


def cmd_fleet(args: argparse.Namespace) -> int:
    s = FleetSettings.from_env(
        records_per_second=args.rate, drain_seconds=args.drain_seconds, minimum=args.min, maximum=args.max
    )
    b = backends(args, need_private=False)
    rec = recommend(read_backlog(b.redis, b.settings.rq_queue), s)
    if args.count:
        print(rec.wanted)
    elif args.json:
        print(json.dumps(rec.as_dict()))
    else:
        print("\n".join(format_recommendation(rec, b.settings.rq_queue)))
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``fleet`` on ``rqp``'s sub-commands."""
    p = sub.add_parser(
        "fleet",
        parents=[common],
        help="how many processors the backlog wants (for docker compose --scale on plain VMs)",
        description="queued records / (records/s per processor x target drain seconds), bounded by --min/--max",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="records/s one processor finishes (default: RQP_FLEET_RECORDS_PER_SECOND, else the running "
        f"workloads' measured rate per processor, else {DEFAULT_RECORDS_PER_SECOND:g})",
    )
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=None,
        help=f"drain the backlog within this many seconds (default: RQP_FLEET_DRAIN_SECONDS or {DEFAULT_DRAIN_SECONDS:g})",
    )
    p.add_argument(
        "--min", type=int, default=None, help=f"fewest processors (default: RQP_FLEET_MIN or {DEFAULT_MIN_PROCESSORS})"
    )
    p.add_argument(
        "--max", type=int, default=None, help=f"most processors (default: RQP_FLEET_MAX or {DEFAULT_MAX_PROCESSORS})"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--count", action="store_true", help="print only the number (for a script's --scale)")
    out.add_argument("--json", action="store_true", help="the backlog, the formula's inputs and the answer as JSON")
    p.set_defaults(func=cmd_fleet)
