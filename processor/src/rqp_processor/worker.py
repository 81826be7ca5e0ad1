"""One worker process: an RQ SimpleWorker that can run nothing but rqp chunks.

SimpleWorker (no fork per job) keeps the workload context -- unwrapped key, decrypted script --
and the workload's script host warm across chunks. The user's code runs only in script hosts
(``rqp.sandbox``): one confined process per workload, never reused for another, holding no key.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import socket
import sys
from typing import Any

from rq import Queue, SimpleWorker
from rq.job import get_current_job

from rqp import sandbox
from rqp.config import Settings
from rqp.connect import connect_redis, open_blob_store, open_key_provider, open_message_queue, open_trust_store
from rqp.errors import RqpError
from rqp.hardening import harden_process
from rqp.jobs import JSONSerializer, RqpJob

from .chunk import ChunkProcessor

__all__ = ["RqpWorker", "build_worker", "job_class_for", "main"]


def job_class_for(processor: ChunkProcessor) -> type[RqpJob]:
    """rqp's job class bound to this worker's chunk processor: the one entry point a job can
    reach, and where rejected jobs are recorded. Made per worker, so nothing is patched."""

    def entry(workload_id: str, sealed_spec: str) -> dict[str, Any]:
        job = get_current_job()
        assert job is not None
        return processor.run(job.id, workload_id, sealed_spec)

    class ProcessorJob(RqpJob):
        def on_reject(self, reason: str) -> None:
            args = self._args if isinstance(self._args, (list, tuple)) else []
            workload = args[0] if args and isinstance(args[0], str) else None
            processor._reject(self.id, workload, reason)

    ProcessorJob.entry = staticmethod(entry)
    return ProcessorJob


class RqpWorker(SimpleWorker):
    """SimpleWorker with rqp's job class and serializer fixed; nothing else configurable from Redis."""

    #: the chunk processor its jobs run on (set by ``build_worker``)
    processor: ChunkProcessor


def build_worker(settings: Settings, name: str | None = None) -> RqpWorker:
    r = connect_redis(settings)
    store = open_blob_store(settings.blob_url, retry_seconds=settings.storage_retry_seconds)
    mq = open_message_queue(settings, r)
    keys = open_key_provider(settings)
    trust = open_trust_store(settings)
    name = name or f"rqp-{socket.gethostname()}-{os.getpid()}"
    pool = sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(settings))
    atexit.register(pool.close)  # no script host outlives its worker (they also die with it: PDEATHSIG)
    processor = ChunkProcessor(
        settings, r, store, mq, keys, trust, worker_name=f"{socket.gethostname()}:{os.getpid()}", pool=pool
    )
    job_class = job_class_for(processor)
    queue = Queue(settings.rq_queue, connection=r, job_class=job_class, serializer=JSONSerializer)
    worker = RqpWorker(
        [queue], name=name, connection=r, job_class=job_class, serializer=JSONSerializer, default_result_ttl=0
    )
    worker.processor = processor
    return worker


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="rqp-processor-worker", description="one rqp worker process (started by rqp-processor)"
    )
    ap.add_argument("--config")
    ap.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    ap.add_argument("--log-level", default=os.environ.get("RQP_LOG_LEVEL", "WARNING"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    harden_process("rqp-processor worker")
    try:
        settings = Settings.load(args.config)
        worker = build_worker(settings)
    except RqpError as exc:
        print(f"rqp-processor: error: {exc}", file=sys.stderr)
        return exc.exit_code
    worker.work(burst=args.burst, logging_level=args.log_level.upper(), with_scheduler=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
