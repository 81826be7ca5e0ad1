"""``StatusPublisher``: a worker's status messages leave its chunk's critical path on a remote queue
(the worker does not wait for the queue's round trip), are coalesced while a publish is under way,
and every one still reaches the queue -- through the outbox's flush when the backlog is full --
against a real Redis, and on Azurite through a real ``ChunkProcessor``."""

from __future__ import annotations

import base64
import threading
import time
import uuid

import pytest

from rqp import sandbox
from rqp.backends import Backends
from rqp.ledger import OUTBOX, flush_outbox, job_id, outbox_add
from rqp.storage import RedisMessageQueue
from rqp_processor.chunk import ChunkProcessor
from rqp_processor.publisher import StatusPublisher

QUEUE = "rqp-status"
STREAM = f"rqp:mq:{QUEUE}"
#: seconds any wait here may take before the test fails (never a synchronisation by sleeping)
WAIT = 10.0


class SlowQueue(RedisMessageQueue):
    """A real Redis-stream queue whose sends wait for ``gate``: a remote queue's round trip that
    the test decides the end of."""

    remote = True

    def __init__(self, r) -> None:
        super().__init__(r)
        self.gate = threading.Event()
        #: how many bodies each ``send_many`` carried
        self.calls: list[int] = []
        self.sending = threading.Event()

    def send_many(self, queue: str, bodies: list[bytes]) -> list[str]:
        self.calls.append(len(bodies))
        self.sending.set()
        assert self.gate.wait(WAIT), "the test never opened the gate"
        return super().send_many(queue, bodies)


def committed(r, n: int) -> list[str]:
    """``n`` messages committed to the outbox, as a chunk's COMMIT writes them; their ids."""
    mids = [f"m-{uuid.uuid4().hex}" for _ in range(n)]
    pipe = r.pipeline(transaction=True)
    outbox_add(pipe, QUEUE, [(m, b"sealed status message " + m.encode()) for m in mids])
    pipe.execute()
    return mids


def returns_within(fn, seconds: float) -> bool:
    done = threading.Event()

    def call() -> None:
        fn()
        done.set()

    threading.Thread(target=call, daemon=True).start()
    return done.wait(seconds)


def test_a_remote_queue_is_published_off_the_callers_path_and_coalesced(r):
    mq = SlowQueue(r)
    pub = StatusPublisher(r, mq)
    first = committed(r, 1)
    # the queue does not answer yet: the caller (the worker, about to take its next chunk) is not held
    assert returns_within(lambda: pub.publish(first), WAIT / 2)
    assert mq.sending.wait(WAIT)
    assert r.xlen(STREAM) == 0
    later = committed(r, 2) + committed(r, 1)
    pub.publish(later[:2])  # two more chunks commit while the first publish waits
    pub.publish(later[2:])
    mq.gate.set()
    assert pub.flush(WAIT)
    assert mq.calls == [1, 3]  # the waiting ones went out together, in one publish
    assert r.xlen(STREAM) == 4 and r.hlen(OUTBOX) == 0
    pub.close()


def test_a_queue_on_redis_is_published_inline(r):
    pub = StatusPublisher(r, RedisMessageQueue(r))
    pub.publish(committed(r, 2))
    assert r.xlen(STREAM) == 2 and r.hlen(OUTBOX) == 0  # on return, no thread involved
    assert pub.publishes == 0


def test_a_full_backlog_leaves_the_oldest_to_the_outbox_flush_and_none_is_lost(r):
    mq = SlowQueue(r)
    pub = StatusPublisher(r, mq, backlog=2)
    pub.publish(committed(r, 1))
    assert mq.sending.wait(WAIT)  # the thread holds the first one
    waiting = committed(r, 3)
    for m in waiting:
        pub.publish([m])
    assert pub.left_to_outbox == 1
    mq.gate.set()
    assert pub.flush(WAIT)
    assert r.xlen(STREAM) == 3 and r.hkeys(OUTBOX) == [waiting[0].encode()]
    assert flush_outbox(r, mq, older_than=0) == 1  # what the scheduler does on every pass
    assert r.xlen(STREAM) == 4 and r.hlen(OUTBOX) == 0
    pub.close()


def test_close_publishes_what_waits(r):
    mq = SlowQueue(r)
    pub = StatusPublisher(r, mq)
    pub.publish(committed(r, 1))
    assert mq.sending.wait(WAIT)
    pub.publish(committed(r, 2))
    mq.gate.set()
    pub.close()
    assert r.xlen(STREAM) == 3 and r.hlen(OUTBOX) == 0


def test_a_queue_that_refuses_leaves_its_messages_in_the_outbox(r):
    class Down(SlowQueue):
        def send_many(self, queue: str, bodies: list[bytes]) -> list[str]:
            from rqp.errors import StorageUnavailableError

            raise StorageUnavailableError(f"queue {queue} did not answer")

    pub = StatusPublisher(r, Down(r))
    mids = committed(r, 2)
    pub.publish(mids)
    assert pub.flush(WAIT)
    assert sorted(r.hkeys(OUTBOX)) == sorted(m.encode() for m in mids)  # for the scheduler's flush
    pub.close()


SCRIPT = "def process(r):\n    return r['n'] * 10\n"


def test_a_chunk_on_azure_queue_storage_commits_and_its_status_reaches_the_queue(world, azurite):
    """A real chunk with Azure Queue Storage (Azurite) as the status queue: the chunk returns once
    committed, and its sealed status message reaches the queue from the publisher's thread."""
    from rqp.azure.queue import AzureMessageQueue
    from rqp.messages import open_envelope
    from rqp.signing import TrustStore

    conn = world.root / "storage-conn"
    conn.write_text(azurite.connection_string)
    conn.chmod(0o600)
    status_queue = f"st-{uuid.uuid4().hex[:12]}"
    settings = world.settings.replace(status_queue=status_queue)
    mq = AzureMessageQueue.from_url(f"azure-queue://devstoreaccount1?connection_string_file={conn}")
    assert mq.remote
    wid = world.pack("azq", [{"n": i} for i in range(5)], script=SCRIPT)
    trust = TrustStore.from_file(world.signer.trusted)
    w, led = world.begun(wid)
    from rqp.jobs import ChunkSpec, seal_spec

    jid = job_id(wid, "c00000000", 0)
    spec = ChunkSpec(wid, "c00000000", ((0, 5, 1),), 2, 0.0, 0.0, time.time())
    pipe = world.r.pipeline()
    led.put_chunk(
        pipe, "c00000000", w.scope("c00000000").seal_packed("record", [(i, b'{"n": %d}' % i) for i in range(5)])
    )
    led.add_jobs(pipe, {jid: seal_spec(w, jid, spec)})
    pipe.execute()
    pool = sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(settings), warm=False)
    backends = Backends(settings, redis_client=world.r, blobs=world.store, queue=mq, keys=world.keys, trust=trust)
    proc = ChunkProcessor(backends, worker_name="test:1", pool=pool)
    try:
        assert proc.publisher.background
        out = proc.run(jid, w.id, base64.b64encode(led.spec(jid)).decode())
        assert out == {"done": 5, "failed": 0, "retrying": 0}
        assert proc.publisher.flush(WAIT)
        got = mq.receive(status_queue, max_messages=32, wait=WAIT)
        assert len(got) == 1
        env = open_envelope(got[0].body, lambda _wid: w, status_queue)  # sealed, and opens as rqp's
        assert env.kind == "status" and sorted(s["id"] for s in env.payload) == [0, 1, 2, 3, 4]
        assert world.r.hlen(OUTBOX) == 0
    finally:
        proc.publisher.close()
        pool.close()
        mq.close()


@pytest.fixture(autouse=True)
def _empty_outbox(r):
    r.delete(OUTBOX, STREAM)
    yield
