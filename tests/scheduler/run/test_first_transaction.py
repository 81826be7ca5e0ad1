"""A workload's first enqueue transaction holds one chunk per worker (issue 28 item 4: the start
of a workload). The first window -- three chunks per worker, up to 4,096 records per transaction
-- went to Redis in one transaction, so no worker could take a job until all of it was read,
parsed and sealed (25-70 ms at RQP_CHUNK_SIZE 256 on 2 loaded cores). Now the workers' first
jobs are in Redis while the rest of the window is sealed; later transactions are as large as
before, and every record is queued once, in order."""

from __future__ import annotations

from dataclasses import replace

from world import world  # noqa: F401 - fixture

from rqp.ledger import Ledger, Priority


def test_the_first_transaction_holds_one_chunk_per_worker_and_the_rest_follows(world, proc):  # noqa: F811
    world.settings = replace(world.settings, window_chunks=6, chunk_size=4)
    wid = world.pack("first", [{"n": i} for i in range(40)])
    run = world.run(wid)
    e = run.enqueuer
    e.workers_seen, e._workers_checked = 2, float("inf")  # two workers registered (not counted again)
    queue = run.ctx.queues[Priority.NORMAL]
    queued_before_each: list[int] = []
    send = e._send

    def spy(pipe, piece):
        queued_before_each.append(queue.count)  # jobs already in Redis when this transaction is sent
        return send(pipe, piece)

    e._send = spy  # type: ignore[method-assign]
    e.fill_window()
    assert queued_before_each == [0, 2], queued_before_each  # 2 jobs first, then the other 4 in one
    assert queue.count == 6 and Ledger(world.r, wid).in_flight() == 6
    assert run.ctx.head.enqueued == 24  # 6 chunks of 4, in order, none twice

    queued_before_each.clear()
    world.work(proc)  # the window ran: the next fill is not the workload's first
    e.fill_window()
    assert len(queued_before_each) == 1, queued_before_each  # the rest in one transaction, as before
    assert run.ctx.head.enqueued == 40
