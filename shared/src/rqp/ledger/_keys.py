"""Where rqp keeps things in Redis: the key schema, in one place.

Per workload W (prefix ``rqp:w:W:``):

=========  ======  ==========================================================================
meta       hash    state, counters, timings, settings the workload was scheduled with, and
                   ``pin``: the workload's content digest sealed under its own data key at its
                   first start (base64), so a workload replaced while unfinished is refused
                   (fields: ``rqp.ledger.Meta``)
c:<chunk>  string  the sealed records of one data chunk, packed (``rqp.ledger.pack_values``):
                   written once by the enqueue, read once by the worker that leases the chunk,
                   deleted by its commit -- Redis holds records only while they are in flight
rec        hash    record id -> sealed record, for records that are not done after their chunk
                   (queued for a retry, or failed: ``rqp retry --failed`` needs them)
st         hash    record id -> sealed status record of a record that is not done (failed, or
                   queued for a retry); a done record has no status of its own: its chunk's note
notes      hash    "<chunk>|<first>|<last>" -> sealed chunk note (``rqp.status.ChunkNote``): which
                   records a committed chunk did and the fields their status records share
done       bitmap  bit per record id: done (idempotent, so re-runs never double count)
failed     bitmap  bit per record id: failed for good
pending    zset    job id -> lease deadline (``+inf`` while queued); the in-flight window
spec       hash    job id -> sealed chunk spec, so a dead worker's chunk can be re-run
parts      hash    chunk -> committed result part (``rqp.ledger.PartRef``)
retry      zset    ``rqp.ledger.RetryEntry`` member ("record:attempt") -> due time (backoff)
n          hash    live counters: processing; per started job: its size and a sealed start note
                   (fields: ``rqp.ledger.Counters``)
perf       hash    processed records and seconds, for throughput and adaptive chunk sizes
lock       string  the scheduler supervising W (host:pid), with a TTL it renews
fence      string  "<generation> <holder>", no TTL: the latest scheduler to take the lock; every
                   write of W's run checks it still names that run (``rqp_scheduler.fence``)
blind      hash    processor (host:pid) -> why it cannot open W (JSON: at, reason), for
                   ``rqp status``; its chunks are handed back for others
control    list    signed operators' requests for W (``rqp.oplog``), oldest first: what the
                   scheduler folds into W's verified control state
=========  ======  ==========================================================================

Shared by every workload: the list of workloads, the outbox of status and event messages not yet
published, the log of rejected jobs, the submissions a serving scheduler takes, and per worker
the job whose lease it holds.
"""

from __future__ import annotations

__all__ = [
    "AUDIT",
    "AUDIT_HEAD",
    "LEADER_FENCE",
    "LEADER_LEASE",
    "OUTBOX",
    "OUTBOX_TIMES",
    "PRIORITIES",
    "REFUSED",
    "REJECTED",
    "SUBMISSIONS",
    "SUBMITTED_CHANNEL",
    "TOMBSTONES",
    "WORKLOADS",
    "WorkloadKeys",
    "held_key",
]

#: zset of workload ids by submission time
WORKLOADS = "rqp:workloads"
#: hash message id -> outbox value, for status/event messages committed but not yet published
OUTBOX = "rqp:outbox"
#: zset message id -> when it was committed
OUTBOX_TIMES = "rqp:outbox:t"
#: list of rejected (forged, replayed, altered) jobs with the reason, newest first
REJECTED = "rqp:rejected"
#: hash workload id -> JSON {reason, code, at, by, manifest}: why the scheduler refused its
#: submission (``rqp.ledger.Refusal``); shown, never acted on
REFUSED = "rqp:refused"
#: list of workload ids waiting for a scheduler
SUBMISSIONS = "rqp:submissions"
#: pub/sub channel: a submitter announces a submission here so a serving scheduler looks at
#: ``SUBMISSIONS`` at once instead of at its next poll (a hint only: the list is the hand-over)
SUBMITTED_CHANNEL = "rqp:submitted"
#: hash workload id -> its priority (``rqp.ledger.Priority``), set before or while it runs
PRIORITIES = "rqp:priorities"
#: list of operators' signed requests (``rqp.oplog``), newest first: a hash chain, each entry
#: holding the digest of the one below it
AUDIT = "rqp:audit"
#: string: the digest of the audit chain's newest entry (what the next request links to)
AUDIT_HEAD = "rqp:audit:head"
#: hash content digest of a deleted workload's manifest -> JSON {workload, at, who}: its signed
#: blobs uploaded again are refused (``rqp.backends.Backends.workload``)
TOMBSTONES = "rqp:tombstones"
#: string "<generation> <holder>" with a TTL: the serving scheduler that leads (``rqp_scheduler.leader``)
LEADER_LEASE = "rqp:scheduler:leader"
#: string "<generation> <holder>", no TTL: the latest leader, which every scheduler write checks
LEADER_FENCE = "rqp:scheduler:leader:fence"


class WorkloadKeys:
    __slots__ = (
        "blind",
        "control",
        "done",
        "failed",
        "fence",
        "lock",
        "meta",
        "n",
        "notes",
        "parts",
        "pending",
        "perf",
        "prefix",
        "rec",
        "retry",
        "spec",
        "st",
        "w",
    )

    def __init__(self, workload_id: str) -> None:
        p = self.prefix = f"rqp:w:{workload_id}:"
        self.w = workload_id
        self.notes = p + "notes"
        self.meta = p + "meta"
        self.rec = p + "rec"
        self.st = p + "st"
        self.done = p + "done"
        self.failed = p + "failed"
        self.pending = p + "pending"
        self.spec = p + "spec"
        self.parts = p + "parts"
        self.retry = p + "retry"
        self.n = p + "n"
        self.perf = p + "perf"
        self.lock = p + "lock"
        self.fence = p + "fence"
        self.blind = p + "blind"
        self.control = p + "control"

    def chunk(self, chunk: str) -> str:
        """String: the packed sealed records of data chunk ``chunk`` while it is in flight."""
        return f"{self.prefix}c:{chunk}"

    def all(self) -> list[str]:
        """Every fixed key (the per-chunk record keys exist only while their chunk is in flight)."""
        return [getattr(self, s) for s in self.__slots__ if s not in ("w", "prefix")]


def held_key(worker: str) -> str:
    """String: the job whose lease worker ``host:pid`` holds (set by START, cleared by COMMIT),
    so the worker's supervisor can end that lease at once when the worker dies."""
    return f"rqp:held:{worker}"
