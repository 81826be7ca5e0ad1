"""The "started" event off the start's critical path on a remote queue (issue 28 item 3).

On Azure Queue Storage the event's send is one to three round trips (the first creates the
queue); the scheduler's first job no longer waits for them. The queue here is the real Redis
queue, marked ``remote`` and with its event sends held until the test lets them go: a start
that still sent the event inline could not return while the send is held. The event is not
lost and keeps its order: it is on the queue before the workload's "done" event.
"""

from __future__ import annotations

import threading
import time

from rqp.backends import Backends
from rqp.messages import open_envelope
from rqp.storage import RedisMessageQueue
from rqp_scheduler.run import WorkloadRun

#: how long a held send waits to be let go (only a failing test waits it out)
HOLD_SECONDS = 10.0


class HeldRemoteQueue(RedisMessageQueue):
    """The Redis queue as a remote one, whose sends to ``held`` wait for ``release``."""

    remote = True

    def __init__(self, *args: object, held: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.held = held
        self.release = threading.Event()
        self.sending = threading.Event()

    def send(self, queue: str, body: bytes) -> str:
        if queue == self.held:
            self.sending.set()
            self.release.wait(HOLD_SECONDS)
        return super().send(queue, body)


def test_started_is_sent_off_the_start_path_and_arrives_before_done(world):
    wid = world.pack("bg-started", [{"n": i} for i in range(10)])
    queue = HeldRemoteQueue(world.r, held=world.settings.events_queue)
    backends = Backends(
        world.settings, redis_client=world.r, blobs=world.store, queue=queue, keys=world.keys, trust=world.trust()
    )
    began = time.monotonic()
    run = WorkloadRun(backends, wid).start()
    assert queue.sending.wait(HOLD_SECONDS), "no started event was sent"
    assert time.monotonic() - began < HOLD_SECONDS, "the start waited for the started event's send"
    assert world.mq().peek(world.settings.events_queue, 10) == []  # still held: not sent inline
    queue.release.set()
    proc = world.processor()
    try:
        world.run_to_end(run, proc)
    finally:
        proc.pool.close()
    kinds = [
        open_envelope(m.body, lambda _w: run.workload, world.settings.events_queue).payload["event"]
        for m in world.mq().peek(world.settings.events_queue, 100)
    ]
    assert kinds[0] == "started" and kinds.count("started") == 1 and "done" in kinds, kinds


def test_on_a_local_queue_started_is_sent_before_the_start_returns(world):
    wid = world.pack("inline-started", [{"n": i} for i in range(4)])
    run = world.run(wid)
    [msg] = world.mq().peek(world.settings.events_queue, 10)
    env = open_envelope(msg.body, lambda _w: run.workload, world.settings.events_queue)
    assert (env.kind, env.payload["event"]) == ("event", "started")
