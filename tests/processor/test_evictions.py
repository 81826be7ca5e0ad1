"""Spot evictions (issue #27 items 1-3): a processor told by Azure Scheduled Events that its VM is
preempted drains within the notice -- no new chunk, what it cannot finish handed back at once --
acknowledges the event, and exits; another processor finishes the workload; every result once and
correct, no attempt spent by the eviction, the requeue counted apart. The metadata service is the
loopback stub ``tests/scheduled_events.py``: no test ever sends a request to the link-local
metadata address."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from scheduled_events import FakeScheduledEvents

from rqp.backends import Backends
from rqp.config import Settings
from rqp.summary import Summary, read_summary
from rqp.vms import VmLabel
from rqp.workload import Workload
from rqp_console.throughput import ThroughputHistory
from rqp_console.workloads import progress_row
from rqp_processor.drain import drain_workers, expected_finish
from rqp_processor.evictions import EvictionWatcher, ScheduledEvents, find_notice, vm_label

#: each record takes this long, so a chunk of CHUNK records outlasts the notice's drain deadline
RECORD_SECONDS = 0.1
CHUNK = 40
#: two chunks: one for each worker of the preempted processor
N = 2 * CHUNK
SLOW = f"""
import time

def process(record):
    time.sleep({RECORD_SECONDS})
    return record["n"] * 3
"""


@pytest.fixture
def imds():
    with FakeScheduledEvents(priority="Spot") as svc:
        yield svc


# ---------------------------------------------------------------- the stub and the watcher
def test_the_stub_serves_the_documented_document_and_records_acknowledgements(imds):
    eid = imds.announce("Preempt", ["vm-a"], not_before_in=30)
    with pytest.raises(urllib.error.HTTPError):  # as the real service: no Metadata header, no answer
        urllib.request.urlopen(imds.url, timeout=5)
    doc = ScheduledEvents(imds.url).document()
    [event] = doc["Events"]
    assert doc["DocumentIncarnation"] == 2
    assert set(event) == {
        "EventId", "EventStatus", "EventType", "ResourceType", "Resources", "NotBefore", "DurationInSeconds",
        "EventSource",
    }  # fmt: skip
    assert (event["EventId"], event["EventStatus"], event["EventType"]) == (eid, "Scheduled", "Preempt")
    ScheduledEvents(imds.url).acknowledge(eid)
    assert imds.acknowledged() == [eid]
    assert ScheduledEvents(imds.url).document()["Events"][0]["EventStatus"] == "Started"


def test_a_notice_counts_only_for_this_vm_and_terminate_only_when_opted_in():
    now = 1_800_000_000.0
    doc = {
        "DocumentIncarnation": 3,
        "Events": [
            {"EventId": "A", "EventType": "Preempt", "Resources": ["vm-b"], "NotBefore": "Fri, 15 Jan 2027 08:00:00 GMT"},
            {"EventId": "B", "EventType": "Terminate", "Resources": ["VM-A"], "NotBefore": "Fri, 15 Jan 2027 08:00:00 GMT"},
            {"EventId": "C", "EventType": "Freeze", "Resources": ["vm-a"], "NotBefore": ""},
        ],
    }  # fmt: skip
    assert find_notice(doc, "vm-a", ("Preempt",), now) is None
    notice = find_notice(doc, "vm-a", ("Preempt", "Terminate"), now)
    assert notice is not None and (notice.event_id, notice.event_type) == ("B", "Terminate")
    assert notice.not_before == 1_799_992_800.0 + 7200  # 2027-01-15T08:00:00Z
    # what is not a document (a broken answer, a Redis-writer-style junk value) is no notice
    for junk in (None, [], {"Events": "x"}, {"Events": [1, {"EventType": "Preempt", "Resources": "vm-a"}]}):
        assert find_notice(junk, "vm-a", ("Preempt",), now) is None


def test_the_watcher_is_off_unless_configured_and_reads_the_vm_name_and_priority(imds):
    settings = Settings.from_mapping({"redis_url": "redis://127.0.0.1:1/0"})
    assert EvictionWatcher.from_settings(settings, lambda n: None) is None
    assert vm_label(settings) is None  # nothing says: the host name stands for the VM
    on = Settings.from_mapping({"redis_url": "redis://127.0.0.1:1/0", "scheduled_events_url": imds.url})
    assert vm_label(on) == VmLabel("fake-vm", "spot")  # the metadata's compute.name and .priority
    assert vm_label(on.replace(vm_name="vm-a", vm_priority="regular")) == VmLabel("vm-a", "regular")
    assert vm_label(settings.replace(vm_priority="spot")) == VmLabel(socket.gethostname(), "spot")
    seen = []
    watcher = EvictionWatcher.from_settings(on, seen.append, "vm-a")
    assert watcher is not None and watcher.poll() is None
    imds.announce("Preempt", ["vm-a"], not_before_in=30)
    notice = watcher.poll()
    assert notice is not None and 28 <= notice.not_before - time.time() <= 31


# ---------------------------------------------------------------- the drain, end to end
def _held(cluster) -> list[str]:
    return [k.decode() for k in cluster.r.keys(f"rqp:held:{socket.gethostname()}:*")]


def _exited(proc: subprocess.Popen, timeout: float) -> bool:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def _summary(cluster, wid: str) -> Summary:
    b = Backends(Settings.load(env=cluster.env))
    return read_summary(b.blobs, Workload.open(b.blobs, b.keys, wid, b.trust))


def _record(cluster, wid: str, rid: int) -> dict:
    return json.loads(cluster.rqp("status", wid, "--record", str(rid)).stdout)


def test_a_preempted_processor_drains_acknowledges_and_another_finishes(cluster, imds):
    wid = "spot"
    data = cluster.write_data(f"{wid}.jsonl", ({"n": i} for i in range(N)))
    cluster.pack(wid, data, cluster.write_script(f"{wid}.py", SLOW))
    cluster.env.update(RQP_CHUNK_SIZE=str(CHUNK), RQP_ADAPTIVE_CHUNKS="false", RQP_MAX_ATTEMPTS="3")
    spot = cluster.start_processor(
        2,
        env={"RQP_SCHEDULED_EVENTS_URL": imds.url, "RQP_VM_NAME": "spot-vm-2", "RQP_DRAIN_MARGIN_SECONDS": "2"},
    )
    sched = cluster.start_scheduler(wid)
    cluster.wait_for(lambda: len(_held(cluster)) == 2, 90, "both workers to hold a chunk")
    t0 = time.monotonic()
    notice_in = 4.0  # NotBefore is whole seconds: the drain deadline is 1-2 s away, a chunk takes 4 s
    eid = imds.announce("Preempt", ["spot-vm-1", "spot-vm-2"], not_before_in=notice_in)
    assert _exited(spot, notice_in + 10), f"the preempted processor did not exit\n{cluster.logs()}"
    t_exit = time.monotonic() - t0
    assert spot.returncode == 0, cluster.logs()
    log = cluster.logs()
    assert imds.acknowledged() == [eid], log
    t_ack = (imds.acknowledged_at(eid) or 0.0) - t0
    assert t_ack <= notice_in, f"acknowledged {t_ack:.1f}s after the notice, past NotBefore\n{log}"
    assert "handed back for another processor (no attempt spent)" in log, log
    drained = float(log.split("drained in ", 1)[1].split("s", 1)[0])
    assert not _held(cluster), "a chunk is still held by a worker of the preempted processor"
    # a second processor (an on-demand VM, or the replacement) finishes the workload
    cluster.start_processor(2)
    out, _ = sched.communicate(timeout=120)
    t_done = time.monotonic() - t0
    assert sched.returncode == 0, out.decode()[-3000:]
    assert "handed back by a draining processor; no attempt spent" in out.decode(), out.decode()[-3000:]
    results = cluster.results(wid)  # raises if a record appears twice
    assert results == {i: 3 * i for i in range(N)}
    st = cluster.status(wid)
    assert (st["state"], st["done"], st["failed"], st["verified"]) == ("done", N, 0, True), st
    assert st["preempted"] >= CHUNK, st  # at least one whole chunk requeued, counted apart
    for rid in (0, CHUNK, N - 1):  # records of both chunks the workers held
        rec = _record(cluster, wid, rid)
        assert (rec["state"], rec["attempts"], rec["reruns"]) == ("done", 1, 0), rec
    text = cluster.rqp("status", wid).stdout.decode()
    assert f"requeued after preemption: {st['preempted']:,} (no attempt spent)" in text, text
    # what the run cost (item 6): processor-seconds by VM, and the VM was Spot (the stub's
    # compute.priority). The tests' processors share this host, which the preempted one said is
    # VM spot-vm-2 (the second one knows no VM and says nothing): one VM here
    summary = _summary(cluster, wid)
    host = "spot-vm-2"
    assert summary.requeued_after_preemption == st["preempted"]
    assert list(summary.processor_seconds_by_vm) == [host], summary
    assert summary.processor_seconds_by_vm[host] >= N * RECORD_SECONDS, summary  # the re-run chunks at least
    assert summary.vm_priority == {host: "spot"}, summary
    # and what the eviction cost: the seconds the two handed-back chunks had run (the exact figure
    # is pinned by the test with stand-in workers below)
    lost = summary.drained_seconds_by_vm.get(host, 0.0)
    assert 0 < lost < 60, summary
    row = progress_row(cluster.r, wid, ThroughputHistory(), summaries=lambda _w: summary)
    assert row is not None and row["preempted"] == st["preempted"], row
    seconds = summary.processor_seconds_by_vm[host]
    assert row["vms"] == [{"host": host, "seconds": seconds, "priority": "spot", "drained_seconds": lost}], row
    print(
        f"\neviction timeline (seconds after the Preempt notice, NotBefore {notice_in:g}s):"
        f"\n  notice       0.0\n  drained      <= {t_exit:.1f} (the drain itself took {drained:.1f})"
        f"\n  acknowledged {t_ack:.1f}\n  exited       {t_exit:.1f}\n  done         {t_done:.1f}"
        f"\n  records requeued after preemption: {st['preempted']}; attempts kept: 1"
        f"\n  processor-seconds by VM: {summary.processor_seconds_by_vm} ({summary.vm_priority}); lost to the "
        f"eviction: {summary.drained_seconds_by_vm}"
    )


def test_sigterm_uses_the_same_drain_path(cluster):
    """``docker compose stop`` or a scale-down: a worker busy past the grace period hands its
    chunk back at once, with no attempt spent -- the path an eviction takes."""
    wid, n = "term", 20  # a 2 s chunk: longer than the grace period
    data = cluster.write_data(f"{wid}.jsonl", ({"n": i} for i in range(n)))
    cluster.pack(wid, data, cluster.write_script(f"{wid}.py", SLOW))
    cluster.env.update(RQP_CHUNK_SIZE=str(n), RQP_ADAPTIVE_CHUNKS="false")
    sup = cluster.start_processor(1, "--grace", "0.5")
    sched = cluster.start_scheduler(wid)
    cluster.wait_for(lambda: len(_held(cluster)) == 1, 90, "the worker to hold the chunk")
    sup.send_signal(signal.SIGTERM)
    assert _exited(sup, 30) and sup.returncode == 0, cluster.logs()
    assert "handed back for another processor (no attempt spent)" in cluster.logs(), cluster.logs()
    # the scheduler re-queues it at once, counted as requeued after preemption, not as a lost
    # worker (the run to the end on another processor is the test above)
    cluster.wait_for(lambda: cluster.status(wid).get("preempted") == n, 30, "the chunk to be requeued")
    assert sched.poll() is None
    meta = cluster.r.hgetall(f"rqp:w:{wid}:meta")
    assert int(meta[b"reclaimed"]) == 1 and int(meta[b"preempted"]) == n, meta
    assert not [f for f in cluster.r.hkeys(f"rqp:w:{wid}:n") if f.startswith(b"d:")], (
        "the drain mark outlived its reclaim"
    )


# ---------------------------------------------------------------- handing back at once
#: a stand-in worker that ignores SIGTERM (a worker busy in its chunk) and says when it is ready
BUSY = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"


def _busy_worker(request, r, jid: str, size: int, per_record: float, started_ago: float) -> subprocess.Popen:
    """A process of this host holding ``jid`` (leased for 10 minutes) as START leaves it, with
    the workload's seconds per record so far and RQ's start time of the job."""
    from datetime import UTC, datetime

    from rq.utils import utcformat

    from rqp.identity import process_identity
    from rqp.ledger import JobId, WorkloadKeys, held_key

    proc = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    request.addfinalizer(lambda: (proc.kill(), proc.wait(), proc.stdout and proc.stdout.close()))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    keys = WorkloadKeys(JobId.parse(jid).workload)
    r.set(held_key(process_identity(proc.pid)), jid)
    r.zadd(keys.pending, {jid: time.time() + 600})
    r.hset(keys.n, f"j:{jid}", size)
    r.hset(keys.perf, mapping={"records": 100, "seconds": 100 * per_record})
    r.hset(f"rq:job:{jid}", "started_at", utcformat(datetime.fromtimestamp(time.time() - started_ago, UTC)))
    return proc


def test_a_chunk_that_cannot_finish_in_time_is_handed_back_at_once(request, r):
    jid = "rqp-slow-c00000000-0"
    # 50 records at 1 s each, started 5 s ago: 45 s to go, the deadline is 20 s away
    proc = _busy_worker(request, r, jid, size=50, per_record=1.0, started_ago=5)
    finish = expected_finish(r, proc.pid)
    assert finish is not None and 44 <= finish - time.time() <= 46
    report = drain_workers(r, [proc], time.monotonic() + 20, "before the eviction (Preempt)")
    assert report.handed_back == [jid] and report.seconds < 5, report  # not at the deadline: at once
    assert r.zscore("rqp:w:slow:pending", jid) <= time.time()  # the lease ended: the scheduler re-runs it now
    assert r.hget("rqp:w:slow:n", f"d:{jid}") is not None  # as drained: no attempt, no lost-worker re-run
    lost = float(r.hget("rqp:w:slow:meta", f"drained_seconds:{socket.gethostname()}"))
    assert 5 <= lost <= 10, lost  # the 5 s it had run, and the drain's own time: what the eviction cost


def test_a_chunk_that_can_finish_is_waited_for_and_junk_tells_nothing(request, r):
    jid = "rqp-soon-c00000000-0"
    proc = _busy_worker(request, r, jid, size=5, per_record=0.1, started_ago=0)  # due in 0.5 s: waited for
    finish = expected_finish(r, proc.pid)
    assert finish is not None and finish - time.time() <= 1.0
    r.hset("rqp:w:soon:perf", "seconds", "nan")  # junk a Redis writer left: no estimate
    assert expected_finish(r, proc.pid) is None
    r.hset("rqp:w:soon:perf", "seconds", 10.0)
    # (this stand-in never ends its chunk: it is waited for to the deadline, then handed back)
    report = drain_workers(r, [proc], time.monotonic() + 1.5, "within 1.5s")
    assert report.handed_back == [jid] and report.seconds >= 1.4, report
