"""The trust table (``rqp.ledger.trust_table``) names every Redis value rqp writes.

One run drives workloads through every feature -- pack, submit, priority, pause, resume, cancel,
a console action, retry --failed, delete --shred, the fleet registry, metrics (scrape and the
metrics logger's queue), status and event messages -- with the scheduler's and processor's own
code in process against a real Redis, and snapshots every key (SCAN), its type and every hash
field and stream entry field after each step. A key or field no row names fails the test: adding
a Redis field without its row fails CI. SECURITY.md's table must be the table's rendering.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rqp.cli import main as rqp_main
from rqp.ledger import Ledger, State
from rqp.ledger._fleet import FleetHeartbeat
from rqp.ledger.trust_table import BEGIN, END, PROTECTIONS, ROWS, find, render_markdown

ROOT = Path(__file__).resolve().parents[2]
#: record 5 always fails (a retry --failed has something to run), every other one succeeds
SCRIPT = "def process(r):\n    if r['n'] == 5:\n        raise ValueError('five')\n    return r['n'] * 2\n"
N = 24


def _s(x: Any) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else str(x)


def snapshot(r: Any) -> set[tuple[str, str, str | None]]:
    """Every (key, type, hash field or stream entry field) Redis holds now."""
    out: set[tuple[str, str, str | None]] = set()
    for raw_key in r.scan_iter(count=1000):
        key = _s(raw_key)
        kind = _s(r.type(raw_key))
        if kind == "hash":
            out.update((key, kind, _s(f)) for f in r.hkeys(raw_key))
        elif kind == "stream":
            for _mid, fields in r.xrange(raw_key, count=100):
                out.update((key, kind, _s(f)) for f in fields)
        else:
            out.add((key, kind, None))
    return out


#: write commands -> (the type they leave, the index of the key written, where hash/stream fields start, step)
_WRITES: dict[str, tuple[str, int, int | None, int]] = {
    **dict.fromkeys(
        ("SET", "SETEX", "SETNX", "SETBIT", "SETRANGE", "APPEND", "INCR", "INCRBY"), ("string", 1, None, 0)
    ),
    **dict.fromkeys(("HSET", "HMSET"), ("hash", 1, 2, 2)),
    **dict.fromkeys(("HSETNX", "HINCRBY", "HINCRBYFLOAT"), ("hash", 1, 2, 0)),
    **dict.fromkeys(("ZADD", "ZINCRBY"), ("zset", 1, None, 0)),
    **dict.fromkeys(("LPUSH", "RPUSH", "LINSERT", "LSET"), ("list", 1, None, 0)),
    **dict.fromkeys(("RPOPLPUSH", "LMOVE", "BLMOVE", "BRPOPLPUSH"), ("list", 2, None, 0)),
    "SADD": ("set", 1, None, 0),
    "XADD": ("stream", 1, None, 0),
}
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
STOP = "trust-table-monitor-stop"


class Monitor:
    """Every write Redis executes (scripts' commands too), read from MONITOR on its own
    connection until ``stop``: what snapshots between steps would miss (a chunk's keys and its
    counters' fields live only between a worker's START and COMMIT)."""

    def __init__(self, r: Any) -> None:
        import threading

        self.r = r
        self.seen: set[tuple[str, str, str | None]] = set()
        self.conn = r.connection_pool.make_connection()
        self.conn.send_command("MONITOR")
        assert self.conn.read_response() in (b"OK", "OK")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while True:
            line = self.conn.read_response()
            args = [
                a.decode(errors="replace") for a in _ARG.findall(line if isinstance(line, bytes) else line.encode())
            ]
            if not args:
                continue
            cmd = args[0].upper()
            if cmd == "ECHO" and args[1:] == [STOP]:
                return
            self._write(cmd, args)

    def _write(self, cmd: str, args: list[str]) -> None:
        if cmd == "XGROUP" and len(args) > 2 and args[1].upper() == "CREATE":
            self.seen.add((args[2], "stream", None))
            return
        if cmd not in _WRITES or len(args) <= _WRITES[cmd][1]:
            return
        kind, at, fields, step = _WRITES[cmd]
        key = args[at]
        if cmd == "XADD":
            i = next((j for j in range(2, len(args)) if args[j] == "*" or re.fullmatch(r"\d+-\d+", args[j])), None)
            self.seen.update((key, kind, f) for f in args[i + 1 :: 2]) if i is not None else None
        elif fields is not None:
            names = args[fields::step] if step else args[fields : fields + 1]
            self.seen.update((key, kind, f) for f in names)
        else:
            self.seen.add((key, kind, None))

    def stop(self) -> set[tuple[str, str, str | None]]:
        if not self.thread.is_alive():
            return self.seen
        self.r.echo(STOP)
        self.thread.join(30)
        assert not self.thread.is_alive(), "MONITOR never saw the stop marker"
        self.conn.disconnect()
        return self.seen


def unnamed(seen: set[tuple[str, str, str | None]]) -> list[str]:
    """What no row of the table names (a hash field no row lists counts as unnamed)."""
    missing = []
    for key, kind, field in sorted(seen, key=lambda x: (x[0], x[2] or "")):
        row = find(key, field if kind in ("hash", "stream") else None)
        if row is None:
            missing.append(f"{key} ({kind})" + (f" field {field!r}" if field is not None else ""))
        elif row.type not in ("any", kind) and not (row.type == "bitmap" and kind == "string"):
            missing.append(f"{key} is a {kind}, its row says {row.type}")
    return missing


def work_all(world: Any, proc: Any) -> int:
    """``world.work`` over the RQ queue of every priority (a workload's priority picks its queue)."""
    from rq import Queue

    from rqp.errors import RqpError
    from rqp.jobs import JSONSerializer, RqpJob
    from rqp.ledger import Priority

    ran = 0
    for level in Priority:
        q = Queue(level.queue(world.settings.rq_queue), connection=world.r, job_class=RqpJob, serializer=JSONSerializer)
        for job in RqpJob.fetch_many(q.get_job_ids(), connection=world.r, serializer=JSONSerializer):
            if job is None:
                continue
            q.remove(job.id)
            try:
                proc.run(job.id, *job.args)
            except RqpError as exc:  # RQ marks such a job failed and goes on
                world.refused.append((job.id, str(exc)))
            ran += 1
    return ran


@pytest.fixture
def monitor(world):
    """MONITOR on the world's Redis, stopped even when the test fails."""
    m = Monitor(world.r)
    yield m
    m.stop()


def refused_submission(world: Any) -> None:
    """A workload signed by an untrusted key, submitted and refused by the scheduler itself."""
    from harness import make_signer

    from rqp.signing import LocalSigningKey
    from rqp.workload import pack
    from rqp_scheduler.scheduler import Scheduler

    key, _ = make_signer(world.root / "untrusted", "untrusted")
    (world.root / "tt-c.jsonl").write_text('{"n": 1}\n')
    (world.root / "tt-c.py").write_text(SCRIPT)
    pack(
        world.store, world.keys, "tt-c", world.root / "tt-c.jsonl", world.root / "tt-c.py", signer=LocalSigningKey(key)
    )
    sched = Scheduler(world.settings)
    try:
        sched._try_add("tt-c", submitted=True)
    finally:
        sched.hosts.close()
        sched.writer.shutdown(wait=True)
    assert "not a trusted signer" in sched.failures["tt-c"]


def test_security_md_holds_the_generated_table():
    text = (ROOT / "SECURITY.md").read_text()
    assert BEGIN in text and END in text, "SECURITY.md lost its trust-table markers"
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert shown == render_markdown(), (
        "SECURITY.md's trust table differs from rqp.ledger.trust_table: regenerate it with "
        "'python -m rqp.ledger.trust_table --write SECURITY.md'"
    )


def test_every_row_is_well_formed():
    for row in ROWS:
        assert row.protection in PROTECTIONS, row
        assert (row.protection == "UNPROTECTED") == bool(row.issue), (
            f"{row.key} {row.field}: what it moves (issue) iff UNPROTECTED"
        )
        if row.protection in ("signed", "derived", "advisory"):
            assert row.test, f"{row.key} {row.field}: a {row.protection} row names the test behind its claim"
        for name in re.findall(r"test_\w+\.py", row.test):
            assert (ROOT / "tests" / "security" / name).exists(), f"{row.key} {row.field}: no tests/security/{name}"
        re.compile(row.key_re)
        re.compile(row.field_re)
        assert row.writers and row.readers and row.drives, row


def test_an_unknown_key_or_field_is_caught():
    """The check itself: a key and a meta field nobody documented are reported."""
    seen = {("rqp:w:x:meta", "hash", "state"), ("rqp:w:x:meta", "hash", "shiny"), ("rqp:newthing", "string", None)}
    assert unnamed(seen) == ["rqp:newthing (string)", "rqp:w:x:meta (hash) field 'shiny'"]


def test_every_key_and_field_of_every_feature_has_a_row(world, proc, cli_env, capsys, monitor, operator):
    from rqp.metrics_http import _RedisGauges
    from rqp_console.actions import perform
    from rqp_metrics.publisher import Summary, SummaryPublisher

    seen: set[tuple[str, str, str | None]] = set()

    def snap() -> None:
        seen.update(snapshot(world.r))

    # pack, submit, priority before it starts
    a = world.pack("tt-a", [{"n": i} for i in range(N)], script=SCRIPT)
    b = world.pack("tt-b", [{"n": i} for i in range(N)])
    assert rqp_main(["submit", a]) == 0
    assert rqp_main(["priority", b, "high"]) == 0
    snap()
    # a running workload, paused, resumed, its priority changed, run to the end, retried
    run_a = world.run(a)
    run_a.step()
    snap()
    work_all(world, proc)
    snap()
    assert rqp_main(["pause", a]) == 0
    run_a.step()
    snap()
    assert rqp_main(["resume", a]) == 0
    assert rqp_main(["priority", a, "low"]) == 0
    for _ in range(100):
        snap()
        if run_a.step():
            break
        work_all(world, proc)
    assert Ledger(world.r, a).state() == State.DONE
    assert rqp_main(["retry", a, "--failed"]) == 0
    snap()
    run_a = world.run(a)
    for _ in range(100):
        snap()
        if run_a.step():
            break
        work_all(world, proc)
    snap()
    # a second one cancelled from the console, then deleted and shredded
    run_b = world.run(b)
    run_b.step()
    work_all(world, proc)
    run_b.step()
    assert perform(world.r, operator.key, "cancel", b, "alice")["state"] == "cancelling"
    snap()
    for _ in range(20):
        if run_b.step():
            break
        work_all(world, proc)
    assert Ledger(world.r, b).state() == State.CANCELLED
    snap()
    # a submission the scheduler refuses (signed by a key it does not trust): its refusal is kept
    refused_submission(world)
    snap()
    # the fleet registry, metrics (a scrape reads; the metrics logger writes its queue), the CLI's readers
    beat = FleetHeartbeat(world.r, "tt-host", os.getpid(), "landlock, seccomp", 2)
    assert beat.beat()
    list(_RedisGauges(world.r, world.settings.rq_queue, scheduler=True).collect())
    now = datetime.now(UTC)
    SummaryPublisher(world.mq(), "rqp-metrics").publish(Summary(1, now, now, ["vm"], 1, 1, 0, 0, [], {}))
    for argv in (["status", a, "--json"], ["list"], ["audit"], ["rejected"], ["events", "--max", "5"]):
        rqp_main(argv)
    snap()
    assert rqp_main(["delete", b, "--shred", "--yes"]) == 0
    snap()
    beat.leave()
    capsys.readouterr()

    watched = monitor.stop()
    assert ("rqp:audit", "list", None) in watched  # MONITOR saw the writes
    seen |= watched
    kinds = {k for k, _, _ in seen}
    # the run saw what it should have: otherwise the check would pass by seeing nothing
    for must in ("rqp:w:tt-a:meta", "rqp:w:tt-a:n", "rqp:w:tt-a:notes", "rqp:submissions", "rqp:audit", "rqp:fleet",
                 "rqp:priorities", "rqp:workloads", "rqp:mq:rqp-status", "rqp:mq:rqp-events", "rqp:mq:rqp-metrics", "rqp:outbox", "rqp:outbox:t", "rqp:refused"):  # fmt: skip
        assert must in kinds, f"the run never wrote {must}"
    assert any(re.fullmatch(r"rqp:w:tt-a:c:.+", k) for k in kinds) and any(k.startswith("rq:job:") for k in kinds)
    missing = unnamed(seen)
    assert not missing, (
        "Redis held keys or fields the trust table (shared/src/rqp/ledger/trust_table.py) does not name; add a row "
        "for each (who writes it, who reads it, what it drives, its protection) and regenerate SECURITY.md's table:\n"
        + "\n".join(missing)
    )
