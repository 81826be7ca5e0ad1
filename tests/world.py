"""An in-process world for the scheduler and processor tests: a real Redis, a blob directory,
real keys, a signed workload -- the roles' objects built directly, no subprocess: a
``WorkloadRun`` (``run``), a ``ChunkProcessor`` with a real script host (``processor``), and
``work`` to run every queued chunk as a worker would."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rqp.config import Settings
from rqp.keys import LocalKeyProvider
from rqp.storage import FileBlobStore, RedisMessageQueue
from rqp.workload import pack


@dataclass
class World:
    root: Path
    settings: Settings
    r: Any
    store: FileBlobStore
    keys: LocalKeyProvider
    signer: Any
    #: (job id, error) of the jobs ``work`` saw refused or failed, as RQ would have marked them
    refused: list[tuple[str, str]] = field(default_factory=list)

    def pack(self, wid: str, records: list[Any], script: str = "def process(r):\n    return r['n'] * 2\n") -> str:
        data = self.root / f"{wid}.jsonl"
        data.write_text("".join(json.dumps(x) + "\n" for x in records))
        (self.root / f"{wid}.py").write_text(script)
        pack(self.store, self.keys, wid, data, self.root / f"{wid}.py", signer=self.signer.key)
        return wid

    def mq(self) -> RedisMessageQueue:
        return RedisMessageQueue(self.r)

    def backends(self) -> Any:
        """The roles' ``Backends`` bundle over this world's clients."""
        from rqp.backends import Backends

        return Backends(
            self.settings, redis_client=self.r, blobs=self.store, queue=self.mq(), keys=self.keys, trust=self.trust()
        )

    def trust(self) -> Any:
        from rqp.signing import TrustStore

        return TrustStore.from_file(self.signer.trusted)

    def run(self, wid: str) -> Any:
        """The scheduler's ``WorkloadRun`` of ``wid``, started."""
        from rqp_scheduler.run import WorkloadRun

        return WorkloadRun(self.backends(), wid).start()

    def begun(self, wid: str) -> tuple[Any, Any]:
        """``wid`` opened, and its ledger begun as a scheduler's start leaves it with nothing
        queued: for the tests that queue their own chunks."""
        import time

        from rqp.ledger import Head, Ledger
        from rqp.workload import Workload

        w = Workload.open(self.store, self.keys, wid, self.trust())
        led = Ledger(self.r, wid)
        led.begin(
            now=time.time(), fmt="jsonl", scheduler="t:1", max_attempts=2, pin=w.seal_pin(), signer=w.signer,
            head=Head().seal(w),
        )  # fmt: skip
        return w, led

    def processor(self, name: str = "test:1") -> Any:
        """A ``ChunkProcessor`` as a worker has it (close its ``pool`` when done)."""
        from rqp import sandbox
        from rqp.backends import Backends
        from rqp_processor.chunk import ChunkProcessor

        backends = Backends(
            self.settings, redis_client=self.r, blobs=self.store, queue=self.mq(), keys=self.keys, trust=self.trust()
        )
        pool = sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(self.settings), warm=False)
        return ChunkProcessor(backends, worker_name=name, pool=pool)

    def queued_jobs(self) -> list[Any]:
        from rq import Queue

        from rqp.jobs import JSONSerializer, RqpJob

        q = Queue(self.settings.rq_queue, connection=self.r, job_class=RqpJob, serializer=JSONSerializer)
        return [j for j in RqpJob.fetch_many(q.get_job_ids(), connection=self.r, serializer=JSONSerializer) if j]

    def work(self, proc: Any) -> int:
        """Run every queued chunk in process, as a worker would (RQ's job args are the entry's)."""
        from rq import Queue

        from rqp.jobs import JSONSerializer, RqpJob

        ran = 0
        q = Queue(self.settings.rq_queue, connection=self.r, job_class=RqpJob, serializer=JSONSerializer)
        from rqp.errors import RqpError

        for job in self.queued_jobs():
            q.remove(job.id)
            try:
                proc.run(job.id, *job.args)
            except RqpError as exc:  # RQ marks such a job failed and goes on
                self.refused.append((job.id, str(exc)))
            ran += 1
        return ran

    def lock_of(self, wid: str, me: str) -> Any:
        """``wid``'s run lock as the scheduler ``me`` would take it."""
        from rqp_scheduler.run.lock import RunLock

        return RunLock(self.r, wid, me)

    def run_as(self, monkeypatch: pytest.MonkeyPatch, wid: str, me: str) -> Any:
        """``wid``'s run started by a scheduler that calls itself ``me`` (another host's, say)."""
        from rqp_scheduler.run import WorkloadRun
        from rqp_scheduler.run import context as run_context

        with monkeypatch.context() as m:
            m.setattr(run_context, "process_identity", lambda: me)
            return WorkloadRun(self.backends(), wid).start()

    def lapse(self, wid: str) -> None:
        """The lock's TTL runs out (its holder paused, frozen or cut off for longer than it)."""
        from rqp.ledger import Ledger

        assert self.r.delete(Ledger(self.r, wid).k.lock) == 1

    def snapshot(self, wid: str) -> dict[bytes, bytes | None]:
        """Every key of ``wid`` but its lock and fence, dumped: what a fenced-out run must not change."""
        keys = sorted(self.r.scan_iter(match=f"rqp:w:{wid}:*"))
        return {k: self.r.dump(k) for k in keys if not k.endswith((b":lock", b":fence"))}

    def run_to_end(self, run: Any, proc: Any, steps: int = 100) -> None:
        """Step the scheduler and work its chunks until the workload is finished."""
        for _ in range(steps):
            if run.step():
                return
            self.work(proc)
        raise AssertionError(f"workload {run.id} did not finish in {steps} steps")


@pytest.fixture
def world(tmp_path, r, redis_url, kek, signer, operator) -> World:
    settings = Settings.from_mapping(
        {
            "redis_url": redis_url,
            "blob_url": f"file://{tmp_path / 'blobs'}",
            "kek_file": str(kek[0]),
            "trusted_signers_file": str(signer.trusted),
            "trusted_operators_file": str(operator.trusted),
            "allow_insecure_redis": True,
            "chunk_size": 4,
            "adaptive_chunks": False,
            "window_chunks": 3,
            "max_attempts": 2,
            "retry_backoff": 0.0,
            "retry_backoff_max": 0.0,
            "lease_seconds": 5,
            "record_timeout": 5,
        }
    )
    return World(
        tmp_path, settings, r, FileBlobStore(tmp_path / "blobs"), LocalKeyProvider(private_key_file=kek[0]), signer
    )


@pytest.fixture
def proc(world: World) -> Any:
    """A ``ChunkProcessor`` of the world, its script pool closed afterwards."""
    p = world.processor()
    yield p
    p.pool.close()


@pytest.fixture
def cli_env(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``rqp`` command line pointed at the world's Redis, blobs and keys."""
    for name, value in {
        "RQP_REDIS_URL": world.settings.redis_url,
        "RQP_BLOB_URL": world.settings.blob_url,
        "RQP_ALLOW_INSECURE_REDIS": "true",
        "RQP_KEK_FILE": str(world.settings.kek_file),
        "RQP_TRUSTED_SIGNERS_FILE": str(world.settings.trusted_signers_file),
    }.items():
        monkeypatch.setenv(name, value)
