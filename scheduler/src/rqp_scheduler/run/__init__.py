"""Supervise one workload from its first record to its summary.

``WorkloadRun.step()`` does a bounded amount of work and returns; the scheduler loop steps every
active workload in turn, so one scheduler supervises many workloads and a crash at any point is
resumed by the next scheduler from what Redis holds:

* enqueue: records stream out of the decrypted data into chunks, kept ``window`` chunks ahead of
  the processors (so Redis holds only the in-flight window, and a data file larger than memory
  works); each chunk is one MULTI: sealed records, queued statuses, sealed spec, the RQ job and
  the cursor, so a restart neither skips nor duplicates a record;
* retries: failed records whose backoff is due go out again in retry chunks;
* reclaim: a chunk whose lease ran out (dead worker), whose RQ job failed, or that RQ lost is
  re-run, or failed once it has used up its attempts;
* finish: when every record is done or failed, results are consolidated and a summary written.

Every key and value in Redis goes through the workload's ``rqp.ledger.Ledger``.

The run is a package of collaborators, each with one job, sharing one ``RunContext`` (the
workload, its ledger, the sealed head): ``records`` (the record stream at the cursor), ``enqueue``
(``Enqueuer``: window, chunk size, transactions), ``retries`` (``Retrier``), ``reclaim``
(``Reclaimer``), ``held`` (``Held``: park/unpark on pause/cancel), ``finish`` (``Finisher``:
events, failing, consolidation and summary), ``lock`` (``RunLock``); ``workload_run``
(``WorkloadRun``) is the short loop that drives them.
"""

from .enqueue import record_key
from .lock import LOCK_SECONDS
from .workload_run import WorkloadRun

__all__ = ["LOCK_SECONDS", "WorkloadRun", "record_key"]
