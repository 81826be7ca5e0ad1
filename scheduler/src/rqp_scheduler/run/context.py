"""What every collaborator of one workload's run shares, in one small object.

The enqueuer, the retrier, the reclaimer, the held path and the finisher all read and write the
same few things: the workload (its keys and manifest), its ``Ledger`` in Redis, the RQ queues, the
enqueue's sealed head as this scheduler last wrote it, and the records' line numbers. They live
here, once, rather than as fields of one large class.
"""

from __future__ import annotations

import redis
from rq import Queue

from rqp.backends import Backends
from rqp.config import Settings
from rqp.errors import IntegrityError
from rqp.identity import process_identity
from rqp.jobs import JSONSerializer, RqpJob
from rqp.ledger import Head, Ledger, Priority
from rqp.records import LineMap
from rqp.storage import BlobStore, MessageQueue
from rqp.workload import Workload

from ..consolidate import StateError
from ..fence import fenced
from ..input_pieces import InputPieces
from .lock import RunLock

__all__ = ["RunContext"]


class RunContext:
    """The shared state of one workload's run (see the module's docstring)."""

    def __init__(self, backends: Backends, workload_id: str) -> None:
        self.backends = backends
        self.settings: Settings = backends.settings
        self.id = workload_id
        #: this scheduler as leases, the lock and rejections name it
        self.me = process_identity()
        #: the workload's lock, and the fence every write of this run checks (``run.lock``)
        self.lock = RunLock(backends.redis, workload_id, self.me)
        #: the run's client: every write fenced by the lock (and, serving, by the leader lease)
        self.r: redis.Redis = fenced(backends.redis, self.lock)
        self.store: BlobStore = backends.blobs
        self.mq: MessageQueue = backends.queue
        self.ledger = Ledger(self.r, workload_id)
        #: the RQ queue of each priority (workers take from high, then normal, then low)
        self.queues = {
            p: Queue(p.queue(self.settings.rq_queue), connection=self.r, job_class=RqpJob, serializer=JSONSerializer)
            for p in Priority
        }
        #: the priority its chunks are queued at, as its signed requests say (``run.control``)
        self.priority = Priority.NORMAL
        #: the enqueue as this scheduler sealed it last (``rqp.ledger.Head``)
        self.head = Head()
        #: the round this run runs, once its stream opened (``RecordStream.open``): a head re-read
        #: later must be of that round (``read_head``)
        self.round: int | None = None
        #: the JSON Lines records' lines (a malformed record, and a chunk's spec, name its line)
        self.lines = LineMap()
        # the submitter's signature is checked here, before any key is unwrapped or byte decrypted
        self.workload: Workload = backends.workload(workload_id)
        #: the records' input digests, computed as the enqueue reads them, for the results root
        self.inputs = InputPieces(self.store, self.workload)

    def still_ours(self) -> None:
        """``WorkloadError`` when another scheduler holds this workload's lock now (a fail-over):
        a head it wrote is not tampering, and this run stops supervising the workload."""
        self.lock.renew()

    def read_head(self) -> Head:
        """The enqueue's sealed head as Redis holds it; ``StateError`` when it does not open, or
        -- once this run has begun a round -- when it is of another round. The head is sealed
        under the data key, which processors hold: one re-sealed as round 1 while a retry round
        ran was re-read, and the run consolidated as a first round again, signing a second round-1
        root over a note of its own (ninth review, G5)."""
        try:
            head = Head.open(self.workload, self.ledger.head())
        except IntegrityError:
            raise StateError(self.id, "the enqueue's sealed head is missing or does not open under its key") from None
        if self.round is not None and head.round != self.round:
            self.still_ours()
            raise StateError(
                self.id,
                f"the enqueue's sealed head in Redis says round {head.round}, but this scheduler runs round "
                f"{self.round} (re-sealed behind rqp's back, by a holder of the data key with Redis access)",
            )
        return head
