"""The Redis-writer fuzzer: real small workloads run while a writer with the Redis password and no
key mutates the keys and fields of the trust table (``rqp.ledger.trust_table``).

Each run packs a victim workload (record 5 fails for good, every other one succeeds) and a
bystander, runs them with the scheduler's and processor's own code in process (``Scheduler``
ticked as ``rqp-scheduler serve`` ticks it, taking submissions; ``ChunkProcessor`` running every
queued chunk as an RQ worker would) against one real Redis, and at seeded ticks applies a few
mutations of one family: random bytes, a value captured earlier put back (replay), increments,
deletes, pushes, reorders, forged control fields. Then it classifies the run:

* ``exact``   -- exit 1 (record 5 failed), every result right, ``rqp status --json`` and the
  sealed summary agree, ``rqp results`` exits 0 with exactly the right lines;
* ``refused`` -- the victim failed with a non-zero exit whose reason names an authentication or
  integrity failure, or the scheduler's catch-all failed it loudly for a value that does not
  decode (naming where; the bystander still finishes); or ``rqp results``/``rqp retry`` refuse
  the same way; or a report marked its counts unverified (exit 4); or the audit chain was
  tampered with and ``rqp audit`` shows the cut (``--verify`` exits 4) -- nothing else affected;
* ``denied``  -- a denial of service, which a Redis writer can always cause (SECURITY.md): the
  victim did not finish within the run's ticks, or records failed (exit 1) for a reason that is
  not an authentication failure (a lease ended behind the worker's back) and every report counts
  them as the sealed summary does, or ``rqp status`` shows a forged state of an ended workload
  as not done (exit 3) or failed (exit 4) -- never a success;
* ``BAD``     -- a silent wrong answer: a success exit with a record missing, extra or wrong, a
  report (status, exit line, audit log, fleet, retry --failed) that disagrees with the sealed
  summary or with what was really done, a role that crashed, a bystander not finished exactly.
  BAD runs whose wrong answer is one ``KNOWN_OPEN`` names are counted apart.

The scheduler is ``rqp_scheduler.Scheduler`` itself (``tick(serve=True)``, its catch-all
included); operator actions (priority, cancel, retry) are signed with the lab's operator key,
which every role trusts, as a deployment's would be.

``python tools/chaos.py --mutations 5000`` (``make chaos``) prints how many runs of each family
ended each way, and every BAD run with its seed and mutations; ``--seed S --family F
--mutations 4`` replays one. It exits 1 when a run ends BAD other than as ``KNOWN_OPEN`` names. ``tests/security/test_redis_fuzz.py`` runs a short version in CI.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: mutations ``make chaos`` applies in all
DEFAULT_MUTATIONS = 5000
#: mutations per run: several, so one workload's setup serves several attacks
DEFAULT_PER_RUN = 4
#: records of the victim workload (record FAILING fails for good) and of the bystander
VICTIM_RECORDS = 120
BYSTANDER_RECORDS = 24
FAILING = 5
#: scheduler ticks a run gets before its victim counts as stalled
MAX_TICKS = 150
#: ticks mutations land in (a victim finishes in about 20; later ones hit a finished workload)
MUTATION_TICKS = 30
#: the chaos scheduler's leader lease (renewed every tick; one that lapsed between two ticks is
#: taken back, the fence still naming it) and how long a restarted one waits for it: a forged lease
#: without a TTL is given one lease of life
LEADER_SECONDS = 1.0
LEADER_WAIT = 5.0
SCRIPT = f"def process(r):\n    if r['n'] == {FAILING}:\n        raise ValueError('five')\n    return r['n'] * 2\n"
#: how ``_exact`` says records failed loudly (a refusal, not a silent wrong answer)
LOUD = "refused records"
#: how it says records failed for another reason, counted honestly, or a report said "not done"
#: of a done workload (a denial of service, never a success claim)
DENIED = "denied"
#: a real cancel before the data was read to its end whose sealed summary counts only the records
#: read (fixed: the scheduler reads the rest and counts it as never run)
CANCEL_SHORT = "cancel summary counts only the records read"
#: every audit entry removed while the chain head still names the newest (fixed: read_audit reports
#: the emptied log as a cut)
AUDIT_EMPTIED = "an emptied audit list verifies"
#: what this tool names as known open: BAD runs whose wrong answer is one of these (none now)
KNOWN_OPEN: tuple[str, ...] = ()
#: how it says a report marked its counts unverified (exit 4), or a reader refused results whose
#: round no sealed head confirms (exit 11, e.g. a Redis writer replaced the head): not a lie
UNVERIFIED = "unverified"
#: ``rqp results``' exit when no sealed head in Redis confirms the round (``RoundUncheckedError``)
ROUND_UNCHECKED = 11
#: what a reason must name to count as a refusal rather than a silent or unexplained failure
AUTH_REASON = re.compile(
    r"authenticat|integrity|does not open|not sealed|forged|replayed|tamper|altered|replaced|refused|behind rqp's back"
    r"|cannot be decrypted"
    # the scheduler's catch-all: a value that does not decode fails its workload, naming where
    r"|failed in the scheduler: unexpected \w+ while reading or scheduling it",
    re.I,
)


# ---------------------------------------------------------------------- the lab
class Lab:
    """One Redis, a blob directory, a KEK and a submitter key, reused by every run."""

    def __init__(self, root: Path, redis_url: str | None = None) -> None:
        import redis

        from rqp.config import Settings
        from rqp.keys import LocalKeyProvider, generate_kek
        from rqp.signing import LocalSigningKey, TrustStore, generate_signing_key
        from rqp.storage import FileBlobStore

        self.root = root
        self.server = None
        if redis_url is None:
            sys.path.insert(0, str(ROOT / "examples"))
            from redis_server import RedisServer  # type: ignore[import-not-found]  # the demo's server helper

            self.server = RedisServer().start()
            redis_url = self.server.url
        keys = root / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        kek = keys / "kek.pem"
        if not kek.exists():
            generate_kek(kek, keys / "kek.pub.pem")
        sign = keys / "signer.pem"
        if not sign.exists():
            generate_signing_key(sign, keys / "signer.pub.pem")
        trusted = keys / "trusted.pem"
        trusted.write_bytes((keys / "signer.pub.pem").read_bytes())
        # the operator who pauses, cancels and retries (``rqp keygen --operator``), trusted by every role
        operator = keys / "operator.pem"
        if not operator.exists():
            generate_signing_key(operator, keys / "operator.pub.pem")
        operators = keys / "trusted-operators.pem"
        operators.write_bytes((keys / "operator.pub.pem").read_bytes())
        self.settings = Settings.from_mapping(
            {
                "redis_url": redis_url,
                "blob_url": f"file://{root / 'blobs'}",
                "kek_file": str(kek),
                "trusted_signers_file": str(trusted),
                "trusted_operators_file": str(operators),
                "allow_insecure_redis": True,
                "chunk_size": 4,
                "adaptive_chunks": False,
                "window_chunks": 3,
                "max_attempts": 2,
                "retry_backoff": 0.0,
                "retry_backoff_max": 0.0,
                "lease_seconds": 30,
                "record_timeout": 5,
                # a checkpoint at every tick: what it reads (notes, parts, statuses) is fuzzed too
                "checkpoint_seconds": 0.001,
            }
        )
        self.env = {
            "RQP_REDIS_URL": redis_url,
            "RQP_BLOB_URL": self.settings.blob_url,
            "RQP_ALLOW_INSECURE_REDIS": "true",
            "RQP_KEK_FILE": str(kek),
            "RQP_TRUSTED_SIGNERS_FILE": str(trusted),
            "RQP_SIGNING_KEY_FILE": str(sign),
            "RQP_OPERATOR_KEY_FILE": str(operator),
            "RQP_TRUSTED_OPERATORS_FILE": str(operators),
        }
        self.r = redis.Redis.from_url(redis_url)
        self.store = FileBlobStore(root / "blobs")
        self.keys = LocalKeyProvider(private_key_file=kek)
        self.signer = LocalSigningKey(sign)
        self.operator = LocalSigningKey(operator)
        self.trust = TrustStore.from_file(trusted)
        self._proc: Any = None
        self._sched: Any = None
        self.lease: Any = None

    def backends(self) -> Any:
        """The roles' ``Backends`` over the lab's clients."""
        from rqp.backends import Backends
        from rqp.storage import RedisMessageQueue

        return Backends(self.settings, redis_client=self.r, blobs=self.store, queue=RedisMessageQueue(self.r),
                        keys=self.keys, trust=self.trust)  # fmt: skip

    def processor(self) -> Any:
        """One ``ChunkProcessor`` (and its script pool) for every run."""
        if self._proc is None:
            from rqp import sandbox
            from rqp_processor.chunk import ChunkProcessor

            pool = sandbox.ScriptPool(sandbox.SandboxConfig.from_settings(self.settings), warm=False)
            self._proc = ChunkProcessor(self.backends(), worker_name="chaos:1", pool=pool)
        return self._proc

    def scheduler(self) -> Any:
        """The scheduler (``rqp_scheduler.Scheduler``), its runs and failures cleared for a new run."""
        if self._sched is None:
            from rqp_scheduler.leader import LeaderLease
            from rqp_scheduler.scheduler import Scheduler

            # as 'rqp-scheduler serve': every write fenced by the leader lease (rqp_scheduler.leader)
            self.lease = LeaderLease(self.r, LEADER_SECONDS, me="chaos:scheduler")
            self.lead()
            self._sched = Scheduler(self.settings, redis_client=self.lease.fenced())
        self.lead()  # each run starts on a flushed Redis
        for run in self._sched.runs.values():
            run.stream.close()
        self._sched.runs.clear()
        self._sched.failures.clear()
        self._sched.failure_codes.clear()
        self._sched.summaries.clear()
        return self._sched

    def lead(self) -> None:
        """Take the leader lease as a (re)started serving scheduler does: at once when it is free,
        junk or this scheduler's own, else once a forged one lapses (a stall: denied)."""
        deadline = time.monotonic() + LEADER_WAIT
        while (holder := self.lease.try_take()) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the leader lease stays held by {holder!r}")
            time.sleep(0.02)

    def pack(self, wid: str, n: int) -> None:
        from rqp.workload import pack

        data, script = self.root / f"{wid}.jsonl", self.root / f"{wid}.py"
        data.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(n)))
        script.write_text(SCRIPT)
        pack(self.store, self.keys, wid, data, script, signer=self.signer)

    def cli(self, *argv: str) -> tuple[int, str, str]:
        """The real ``rqp`` command, in process: (exit code, stdout, stderr)."""
        from rqp.cli import main as rqp_main

        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = rqp_main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return code, out.getvalue(), err.getvalue()

    def close(self) -> None:
        if self._proc is not None:
            self._proc.pool.close()
        if self._sched is not None:
            self._sched.hosts.close()
            self._sched.writer.shutdown(wait=True)
        self.r.close()
        if self.server is not None:
            self.server.stop()


# ---------------------------------------------------------------------- the roles, stepped
class Serve:
    """``rqp-scheduler serve``'s own loop body (``Scheduler.tick(serve=True)``), one tick at a
    time: take submissions, step every run. A workload's ``RqpError`` -- or anything nobody
    foresaw, which the scheduler's catch-all turns into that workload failing loudly -- fails that
    workload (exit code and reason kept, as ``run`` prints them); an exception out of ``tick``
    itself is the scheduler crashing, as it would crash the service."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.sched = lab.scheduler()
        self.opened: dict[str, Any] = {}
        self.crashed: str | None = None
        #: times the scheduler lost its leader lease and was restarted
        self.restarts = 0

    @property
    def runs(self) -> dict[str, Any]:
        return self.sched.runs  # type: ignore[no-any-return]

    @property
    def failures(self) -> dict[str, tuple[int, str]]:
        return {w: (self.sched.failure_codes.get(w, 1), why) for w, why in self.sched.failures.items()}

    def _remember(self) -> None:
        for wid, run in self.sched.runs.items():
            self.opened[wid] = run

    def add(self, wid: str) -> None:
        self.sched._try_add(wid)
        self._remember()

    def tick(self) -> None:
        from rqp_scheduler.leader import LeaderLost

        if self.crashed:
            return
        try:
            for run in self.sched.runs.values():
                # a tick stands for the periodic tasks' intervals: reclaims, RQ checks, the outbox
                run._last.update(dict.fromkeys(("reclaim", "rq", "outbox", "progress", "workers"), 0.0))
            if not self.lab.lease.renew():
                raise LeaderLost("the lease was taken")
            self.sched.tick(serve=True)
            self._remember()
        except LeaderLost:
            self.restart()
        except Exception as exc:  # what would kill 'rqp-scheduler serve'
            self.crashed = f"{type(exc).__name__}: {exc}"

    def restart(self) -> None:
        """A leader fenced out (its lease or fence forged) steps down and exits 75; its supervisor
        restarts it, and it resumes every unfinished workload from Redis once it leads again."""
        self.restarts += 1
        for run in self.sched.runs.values():
            run.stream.close()
        self.sched.runs.clear()
        try:
            self.lab.lead()
            self.sched.resume_unfinished()
            self._remember()
        except Exception as exc:  # the restarted service would die the same way
            self.crashed = f"restarted after losing the lease: {type(exc).__name__}: {exc}"


def work(lab: Lab) -> list[str]:
    """Every queued chunk of every priority's RQ queue, run as an RQ worker runs it (a job that
    raises is marked failed and the worker goes on); returns the jobs' errors."""
    from rq import Queue

    from rqp.jobs import JSONSerializer, RqpJob
    from rqp.ledger import Priority

    errors = []
    proc = lab.processor()
    for level in Priority:
        q = Queue(level.queue(lab.settings.rq_queue), connection=lab.r, job_class=RqpJob, serializer=JSONSerializer)
        try:
            jobs = RqpJob.fetch_many(q.get_job_ids(), connection=lab.r, serializer=JSONSerializer)
        except Exception as exc:  # a job hash RQ cannot read: RQ's problem, counted
            errors.append(f"fetch: {type(exc).__name__}: {exc}")
            q.empty()
            continue
        for job in jobs:
            if job is None:
                continue
            q.remove(job.id)
            try:
                proc.run(job.id, *job.args)
            except Exception as exc:  # RQ marks the job failed and goes on
                errors.append(f"{job.id}: {type(exc).__name__}: {exc}")
    return errors


# ---------------------------------------------------------------------- mutations
@dataclass
class Ctx:
    """What a mutation may use: the lab, the victim and bystander ids, the run's random source and
    values captured at earlier ticks (for replays)."""

    lab: Lab
    victim: str
    bystander: str
    rng: random.Random
    captured: list[dict[bytes, bytes]] = field(default_factory=list)
    #: the victim's meta fields at earlier ticks (a sealed field put back alone)
    captured_meta: list[dict[bytes, bytes]] = field(default_factory=list)
    #: audit entries and fleet members the harness itself made (the truth reports must show)
    real_audit: list[tuple[str, str, str]] = field(default_factory=list)
    real_fleet: set[str] = field(default_factory=set)
    #: mutations that finish at the next tick what one began (a lease ended again, for the next generation)
    followups: list[Callable[[], str]] = field(default_factory=list)

    @property
    def r(self) -> Any:
        return self.lab.r

    def k(self, name: str) -> str:
        return f"rqp:w:{self.victim}:{name}"

    def junk(self) -> bytes:
        return self.rng.randbytes(self.rng.choice((1, 8, 36, 200)))

    def capture(self, keys: list[str]) -> None:
        """DUMP of the keys now, for a later replay."""
        self.captured.append({k.encode(): v for k in keys if (v := self.r.dump(k)) is not None})
        self.captured_meta.append(self.r.hgetall(self.k("meta")))

    def replay(self, key: str) -> str:
        """Put back a value ``key`` had at an earlier tick (RESTORE REPLACE)."""
        for snap in self.rng.sample(self.captured, len(self.captured)):
            if key.encode() in snap:
                self.r.restore(key, 0, snap[key.encode()], replace=True)
                return f"RESTORE {key} <as captured earlier>"
        return f"(nothing captured for {key})"


def _existing(ctx: Ctx, pattern: str) -> list[str]:
    return sorted(k.decode() for k in ctx.r.scan_iter(match=pattern, count=1000))


def _hash_field(ctx: Ctx, key: str) -> str | None:
    fields = sorted(f.decode(errors="replace") for f in ctx.r.hkeys(key))
    return ctx.rng.choice(fields) if fields else None


def _generic(ctx: Ctx, keys: list[str], ops: tuple[str, ...]) -> str:
    """One generic mutation of one of ``keys`` (whatever its type): junk, replay, incr, del,
    push, reorder -- those of ``ops`` that apply."""
    keys = [k for k in keys if ctx.r.exists(k)] or keys
    if not keys:
        return "(no key to mutate)"
    key = ctx.rng.choice(keys)
    kind = ctx.r.type(key).decode()
    op = ctx.rng.choice(ops)
    rng = ctx.rng
    if op == "replay":
        return ctx.replay(key)
    if op == "del":
        if kind == "hash" and (f := _hash_field(ctx, key)) and rng.random() < 0.7:
            ctx.r.hdel(key, f)
            return f"HDEL {key} {f}"
        ctx.r.delete(key)
        return f"DEL {key}"
    if kind == "hash":
        f = _hash_field(ctx, key)
        if f is None:
            return f"(empty hash {key})"
        if op == "incr":
            delta = rng.choice((1, -1, 10, -1000000, 7))
            try:
                ctx.r.hincrby(key, f, delta)
            except Exception:  # not an integer: set it to one instead
                ctx.r.hset(key, f, delta)
            return f"HINCRBY {key} {f} {delta}"
        if op == "swap":
            g = _hash_field(ctx, key)
            a, b = ctx.r.hget(key, f), ctx.r.hget(key, g)
            ctx.r.hset(key, mapping={f: b, g: a})
            return f"HSET {key} {f} <{g}'s value> {g} <{f}'s value>"
        value = ctx.junk()
        ctx.r.hset(key, f, value)
        return f"HSET {key} {f} <{len(value)} random bytes>"
    if kind == "zset":
        members = [m.decode(errors="replace") for m in ctx.r.zrange(key, 0, -1)]
        if op in ("reorder", "incr") and members:
            m = rng.choice(members)
            score = rng.choice((0, 1, time.time() + 3600, float("inf")))
            ctx.r.zadd(key, {m: score})
            return f"ZADD {key} {score} {m}"
        m = rng.choice((*members, "junk", f"rqp-{ctx.victim}-c99999999-0", "1:1")) if members else "junk"
        ctx.r.zadd(key, {m: rng.choice((0, float("inf")))})
        return f"ZADD {key} {m}"
    if kind == "list":
        items = ctx.r.lrange(key, 0, -1)
        if op == "reorder" and items:
            rng.shuffle(items)
            pipe = ctx.r.pipeline()
            pipe.delete(key)
            pipe.rpush(key, *items)
            pipe.execute()
            return f"reorder {key}"
        value = rng.choice(items) if items and rng.random() < 0.5 else ctx.junk()
        ctx.r.rpush(key, value)
        return f"RPUSH {key} <{'an existing item' if value in items else 'random bytes'}>"
    if kind == "string":
        if op == "incr":
            bit = rng.randrange(0, VICTIM_RECORDS + 8)
            ctx.r.setbit(key, bit, rng.choice((0, 1)))
            return f"SETBIT {key} {bit}"
        value = ctx.junk()
        ctx.r.set(key, value, keepttl=True)
        return f"SET {key} <{len(value)} random bytes>"
    return f"(no {op} for a {kind} {key})"


ALL_OPS = ("junk", "replay", "incr", "del", "push", "reorder", "swap")


def m_control(ctx: Ctx) -> str:
    """Forged control: the fields an operator's request sets (issue #22 item 1)."""
    rng, meta = ctx.rng, ctx.k("meta")
    choice = rng.randrange(6)
    if choice == 0:
        ctx.r.hset(meta, mapping={"control": "cancel", "state": "cancelling"})
        return f"HSET {meta} control cancel state cancelling"
    if choice == 1:
        ctx.r.hset(meta, mapping={"control": "pause", "state": "paused"})
        return f"HSET {meta} control pause state paused"
    if choice == 2:
        ctx.r.hdel(meta, "control")
        ctx.r.hset(meta, "state", "running")
        return f"HDEL {meta} control; HSET state running"
    if choice == 3:
        state = rng.choice(("done", "failed", "cancelled", "consolidating"))
        ctx.r.hset(meta, "state", state)
        return f"HSET {meta} state {state}"
    if choice == 4:
        level = rng.choice(("high", "low", "junk"))
        ctx.r.hset("rqp:priorities", ctx.victim, level)
        return f"HSET rqp:priorities {ctx.victim} {level}"
    ctx.r.hset(meta, "control", "cancel")
    return f"HSET {meta} control cancel"


def m_counters(ctx: Ctx) -> str:
    """The O(1) counters ``rqp:w:W:n`` done/failed/processing (issue #22 item 3)."""
    f = ctx.rng.choice(("done", "failed", "processing"))
    delta = ctx.rng.choice((10, -1, -1000000, 1))
    ctx.r.hincrby(ctx.k("n"), f, delta)
    return f"HINCRBY {ctx.k('n')} {f} {delta}"


def m_progress(ctx: Ctx) -> str:
    """The plain progress fields of meta and the throughput hash perf, shown by status (issue #22
    item 3)."""
    if ctx.rng.random() < 0.25:
        return _generic(ctx, [ctx.k("perf")], ("junk", "incr", "del", "replay"))
    f = ctx.rng.choice(
        ("enqueued", "chunks", "total", "started_at", "finished_at", "reclaimed", "read_bytes", "data_bytes")
    )
    junk = ("nan", "inf", "1e999", "x") if f in ("read_bytes", "data_bytes") else ()
    value = ctx.rng.choice((0, 1, 99999, -5, *junk))
    ctx.r.hset(ctx.k("meta"), f, value)
    return f"HSET {ctx.k('meta')} {f} {value}"


def m_audit(ctx: Ctx) -> str:
    """The audit list (issue #22 item 2): forged entries, replays, deletes, reorders."""
    rng = ctx.rng
    op = rng.randrange(4)
    if op == 0:
        entry = {"at": time.time(), "who": "alice (console)", "what": "delete --shred", "workload": ctx.victim}
        ctx.r.lpush("rqp:audit", json.dumps(entry))
        return f"LPUSH rqp:audit {json.dumps(entry)}"
    if op == 1 and ctx.r.llen("rqp:audit"):
        item = ctx.r.lindex("rqp:audit", -1)
        ctx.r.lpush("rqp:audit", item)
        return "LPUSH rqp:audit <an existing entry, again>"
    if op == 2 and ctx.r.llen("rqp:audit"):
        ctx.r.lpop("rqp:audit")
        return "LPOP rqp:audit"
    return _generic(ctx, ["rqp:audit"], ("reorder", "junk"))


def m_failed(ctx: Ctx) -> str:
    """The failed bitmap ``rqp:w:W:failed`` (issue #22 item 3: retry --failed reads it)."""
    key = ctx.k("failed")
    op = ctx.rng.randrange(3)
    if op == 0:
        ctx.r.delete(key)
        return f"DEL {key}"
    if op == 1:
        ctx.r.setbit(key, FAILING, 0)
        return f"SETBIT {key} {FAILING} 0"
    bit = ctx.rng.randrange(VICTIM_RECORDS)
    ctx.r.setbit(key, bit, 1)
    return f"SETBIT {key} {bit} 1"


def m_fleet(ctx: Ctx) -> str:
    """The fleet registry (issue #22 item 5): a forged processor, edited protections."""
    rng = ctx.rng
    if rng.random() < 0.5 or not ctx.real_fleet:
        member = f"gpu-{rng.randrange(100):02d}:{rng.randrange(1, 65535)}"
        host, pid = member.split(":")
        ctx.r.hset(f"rqp:fleet:{member}", mapping={"host": host, "pid": pid, "workers": 8,
                   "protections": "landlock, seccomp, rlimits", "started_at": time.time(), "seen_at": time.time()})  # fmt: skip
        ctx.r.zadd("rqp:fleet", {member: time.time() + 600})
        return f"forged fleet entry {member} 'landlock, seccomp, rlimits'"
    member = sorted(ctx.real_fleet)[0]
    ctx.r.hset(f"rqp:fleet:{member}", "protections", "landlock, seccomp, rlimits, gvisor")
    return f"HSET rqp:fleet:{member} protections <more than it has>"


def m_submissions(ctx: Ctx) -> str:
    """The submissions list (issue #22 item 4): replays of the victim, the bystander, junk."""
    rng = ctx.rng
    wid = rng.choice((ctx.victim, ctx.victim, ctx.bystander, "no-such-workload"))
    (ctx.r.lpush if rng.random() < 0.5 else ctx.r.rpush)("rqp:submissions", wid)
    return f"PUSH rqp:submissions {wid}"


def m_refused(ctx: Ctx) -> str:
    """The refusals hash ``rqp:refused`` (issue #24 item 1): a refusal forged for the victim or
    the bystander -- well formed, naming the manifest in the blob store, so readers would show it
    if they believed Redis over the workload's own state -- junk, or one deleted. The scheduler
    must run both workloads exactly, and every report must show their real state."""
    from rqp.ledger import Refusal, manifest_sha256
    from rqp.workload import blob_name

    rng = ctx.rng
    wid = rng.choice((ctx.victim, ctx.victim, ctx.bystander))
    op = rng.randrange(4)
    if op == 0:
        manifest = manifest_sha256(ctx.lab.store.get(blob_name(wid, "manifest.json")))
        forged = Refusal(wid, f"workload {wid} differs from what its signer signed: tampered with", 4, time.time(),
                         "forger:1", manifest)  # fmt: skip
        ctx.r.hset("rqp:refused", wid, forged.to_json())
        return f"HSET rqp:refused {wid} <a well-formed refusal of its current manifest>"
    if op == 1:
        ctx.r.hset("rqp:refused", wid, ctx.junk())
        return f"HSET rqp:refused {wid} <random bytes>"
    if op == 2:
        ctx.r.rpush("rqp:submissions", wid)
        ctx.r.hset("rqp:refused", wid, json.dumps({"reason": "refused", "code": 0, "at": 0, "by": "x"}))
        return f"HSET rqp:refused {wid} <code 0>; RPUSH rqp:submissions {wid}"
    ctx.r.hdel("rqp:refused", wid)
    return f"HDEL rqp:refused {wid}"


def m_chunk(ctx: Ctx) -> str:
    """The in-flight chunks ``rqp:w:W:c:<chunk>`` (issue #22 reproduction 7): junk, a replay or a
    delete, and half the time the chunk's lease ended too and its job taken off RQ's queue, so the
    scheduler reclaims it and reads the value itself."""
    keys = _existing(ctx, ctx.k("c:*"))
    what = _generic(ctx, keys, ("junk", "replay", "del"))
    chunk = what.split(":c:")[-1].split()[0] if ":c:" in what else None
    if chunk and ctx.rng.random() < 0.5:
        expired = _expire_chunk(ctx, chunk)
        what += "; " + expired
        if expired.endswith("(no job)"):
            return what
        # and again at each next tick, for the generation the reclaim queued, until the reclaim
        # gives up: the re-runs after a lost worker are free, so a second end is not the last attempt
        _expire_again(ctx, chunk, lease_ends_to_give_up(ctx.lab.settings.max_attempts) - 1)
    return what


def m_chunk_value(ctx: Ctx) -> str:
    """A chunk's one sealed value (``rqp.chunk_records``) edited where its form gives a handle:
    swapped with another chunk's, cut or grown by a few bytes, or its id runs shifted or
    re-sized (the runs are in the clear; the AEAD binds them). Each must fail authentication
    as a whole -- the chunk's records fail with that reason or re-run -- never run a record
    under another's id."""
    keys = [k for k in _existing(ctx, ctx.k("c:*")) if ctx.r.exists(k)]
    if not keys:
        return "(no chunk value to mutate)"
    rng = ctx.rng
    key = rng.choice(keys)
    value = ctx.r.get(key) or b""
    op = rng.choice(("swap", "cut", "grow", "shift", "resize"))
    if op == "swap" and len(keys) > 1:
        other = rng.choice([k for k in keys if k != key])
        a, b = value, ctx.r.get(other) or b""
        ctx.r.mset({key: b, other: a})
        return f"the values of {other} and {key} swapped"
    if op == "cut" and len(value) > 8:
        n = rng.randrange(1, 8)
        ctx.r.set(key, value[:-n])
        return f"SET {key} <cut by {n} bytes>"
    runs = 16 + 4  # HEADER + nonce, then the run count: the first run's first id and count follow
    if op in ("shift", "resize") and len(value) > runs + 8:
        at = runs + (0 if op == "shift" else 4)
        field = int.from_bytes(value[at : at + 4], "big")
        field = max(0, field + rng.choice((1, -1, 2)))
        ctx.r.set(key, value[:at] + field.to_bytes(4, "big") + value[at + 4 :])
        return f"SET {key} <its first id run's {'first id' if op == 'shift' else 'count'} now {field}>"
    ctx.r.set(key, value + bytes([rng.randrange(256)]))
    return f"SET {key} <grown by a byte>"


def lease_ends_to_give_up(max_attempts: int) -> int:
    """How many times a chunk's lease must end before its reclaim gives up and fails what is left:
    the first ``FREE_LOST_RERUNS`` re-runs after a lost worker spend no attempt, then each spends one."""
    from rqp_scheduler.run.reclaim import FREE_LOST_RERUNS

    return FREE_LOST_RERUNS + max_attempts


def _expire_again(ctx: Ctx, chunk: str, left: int) -> None:
    """At the next tick, end the lease of the generation the reclaim queued; then again, ``left``
    times in all, while the chunk still has a job."""
    if left <= 0:
        return

    def followup() -> str:
        what = _expire_chunk(ctx, chunk)
        if not what.endswith("(no job)"):
            _expire_again(ctx, chunk, left - 1)
        return what

    ctx.followups.append(followup)


def _expire_chunk(ctx: Ctx, chunk: str) -> str:
    """End the lease of ``chunk``'s jobs and take them off RQ's queues: the scheduler reclaims it."""
    jobs = [j.decode() for j in ctx.r.zrange(ctx.k("pending"), 0, -1) if f"-{chunk}-".encode() in j]
    for jid in jobs:
        ctx.r.zadd(ctx.k("pending"), {jid: 0})
        for queue in _existing(ctx, "rq:queue:*"):
            ctx.r.lrem(queue, 0, jid)
    return f"ZADD {ctx.k('pending')} 0 and LREM from RQ's queues: {' '.join(jobs) or '(no job)'}"


def m_sealed(ctx: Ctx) -> str:
    """The sealed values: statuses, kept records, notes, specs, head, pin, start notes."""
    rng = ctx.rng
    if rng.random() < 0.3:
        meta = ctx.k("meta")
        f = rng.choice(("head", "pin", "error_sealed", "beat"))
        op = rng.randrange(3)
        if op == 0:
            value = base64.b64encode(ctx.junk())
            ctx.r.hset(meta, f, value)
            return f"HSET {meta} {f} <random base64>"
        if op == 1:
            other = ctx.r.hget(f"rqp:w:{ctx.bystander}:meta", f)
            if other is not None:
                ctx.r.hset(meta, f, other)
                return f"HSET {meta} {f} <the bystander's>"
        for snap in rng.sample(ctx.captured_meta, len(ctx.captured_meta)):
            if f.encode() in snap:
                ctx.r.hset(meta, f, snap[f.encode()])
                return f"HSET {meta} {f} <its value at an earlier tick>"
        return f"(no earlier {f} captured)"
    keys = [ctx.k(n) for n in ("st", "rec", "notes", "spec")]
    return _generic(ctx, keys, ("junk", "replay", "del", "swap"))


def m_derived(ctx: Ctx) -> str:
    """Values rqp checks against sealed state: pending, retry, parts, done, lock, workloads,
    the outbox, the held markers, RQ's job hashes and queues."""
    keys = [ctx.k(n) for n in ("pending", "retry", "parts", "done", "lock")]
    keys += ["rqp:workloads", "rqp:outbox", "rqp:outbox:t", *_existing(ctx, "rqp:held:*")]
    keys += _existing(ctx, f"rq:job:rqp-{ctx.victim}-*")[:8]
    keys += _existing(ctx, "rq:queue:*")
    return _generic(ctx, keys, ("junk", "replay", "incr", "del", "push", "reorder"))


def m_drained(ctx: Ctx) -> str:
    """The drain marks ``d:<job id>`` of ``rqp:w:W:n``, the ``preempted`` count of meta and the
    VMs' Spot labels ``rqp:vm:<host>`` (issue #27): a chunk marked drained with its lease ended
    (re-run without spending an attempt), a mark alone, a mark naming no job, junk in the count,
    a forged or junk label, junk in a VM's drained seconds."""
    from rqp.ledger import JobId

    rng, n, meta = ctx.rng, ctx.k("n"), ctx.k("meta")
    op = rng.randrange(6)
    jobs = [j.decode() for j in ctx.r.zrange(ctx.k("pending"), 0, -1)]
    if op < 2 and jobs:
        jid = rng.choice(jobs)
        ctx.r.hset(n, f"d:{jid}", "forger:1")
        what = f"HSET {n} d:{jid} forger:1"
        if op == 0:
            what += "; " + _expire_chunk(ctx, JobId.parse(jid).chunk)
        return what
    if op == 2:
        field = f"d:rqp-{ctx.victim}-c99999999-0"
        ctx.r.hset(n, field, ctx.junk())
        return f"HSET {n} {field} <random bytes>"
    if op == 4:
        field = f"drained_seconds:{rng.choice((socket.gethostname(), 'gpu-01', 'x' * 300))}"
        value = rng.choice(("nan", "-1", "1e999", "junk", 12.5))
        ctx.r.hset(meta, field, value)
        return f"HSET {meta} {field[:40]} {value}"
    if op == 3:
        key = f"rqp:vm:{socket.gethostname()}"
        label = rng.choice(
            (
                '{"vm": "gpu-01", "priority": "spot"}',
                '{"vm": 7, "priority": "x"}',
                '{"vm": "' + "v" * 500 + '"}',
                "junk",
            )
        )
        ctx.r.set(key, label)
        return f"SET {key} {label[:60]!r}"
    value = rng.choice(("x", -5, 99999, "1e999"))
    ctx.r.hset(meta, "preempted", value)
    return f"HSET {meta} preempted {value}"


def m_leader(ctx: Ctx) -> str:
    """The serving schedulers' leader lease and fence (issue #26): junk, a forged holder with or
    without a TTL, another type, deleted. The worst allowed: the leader steps down and scheduling
    stalls until the lease is free again."""
    from rqp_scheduler.leader import FENCE, LEASE

    rng = ctx.rng
    key = rng.choice((LEASE, FENCE))
    op = rng.randrange(5)
    if op >= 3:
        ctx.r.delete(key)
    if op == 0:
        ctx.r.set(key, ctx.junk())
        return f"SET {key} <junk, no TTL>"
    if op == 1:
        value = f"{rng.randrange(1, 99)} intruder:{rng.randrange(1, 65535)}"
        ctx.r.set(key, value, px=rng.randrange(50, 400))
        return f"SET {key} {value!r} PX <short>"
    if op == 2:
        value = f"{rng.randrange(1, 99)} intruder:1"
        ctx.r.set(key, value)
        return f"SET {key} {value!r}"
    if op == 3:
        ctx.r.hset(key, "x", "y")
        return f"HSET {key} x y (another type)"
    return f"DEL {key}"


def m_lock(ctx: Ctx) -> str:
    """A workload's run lock and its fence (``rqp_scheduler.run.lock``): junk, a forged holder or
    generation with or without a TTL, another type, deleted (the lock lapsing). The worst allowed:
    the run stops, writing nothing more, until its lock lapses and the service takes it over
    (``run_case`` lets it lapse at the end) -- a stall, never a wrong answer."""
    rng = ctx.rng
    key = ctx.k(rng.choice(("lock", "fence")))
    op = rng.randrange(6)
    if op >= 4:
        ctx.r.delete(key)
    if op == 0:
        ctx.r.set(key, ctx.junk(), ex=rng.choice((None, 2)))
        return f"SET {key} <junk>"
    if op == 1:
        value = f"intruder:{rng.randrange(1, 65535)}" if key.endswith("lock") else f"{rng.randrange(1, 99)} intruder:1"
        ctx.r.set(key, value, ex=rng.choice((None, 2)))
        return f"SET {key} {value!r}"
    if op == 2:
        held = ctx.r.get(key)
        if held is None:
            return f"(no {key} to bump)"
        gen, _, who = held.decode(errors="replace").partition(" ")
        value = (
            f"{int(gen) + 1 if gen.isdigit() else 1} {who}" if key.endswith("fence") else held.decode(errors="replace")
        )
        ctx.r.set(key, value)
        return f"SET {key} {value!r} (its own holder, a generation on)"
    if op == 3:
        ctx.r.delete(key)
        ctx.r.hset(key, "x", "y")
        return f"HSET {key} x y (another type)"
    return f"DEL {key}"


@dataclass(frozen=True)
class Family:
    name: str
    mutate: Callable[[Ctx], str]
    #: what is known open in the family (its BAD runs are expected, the CI test pins them); "" when none
    open_issue: str = ""


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("control", m_control),
        Family("counters", m_counters),
        Family("progress", m_progress),
        Family("audit", m_audit),
        Family("failed", m_failed),
        Family("fleet", m_fleet),
        Family("submissions", m_submissions),
        Family("refused", m_refused),
        Family("chunk", m_chunk),
        Family("chunk-value", m_chunk_value),
        Family("sealed", m_sealed),
        Family("derived", m_derived),
        Family("lock", m_lock),
        Family("drained", m_drained),
        Family("leader", m_leader),
    )
}


# ---------------------------------------------------------------------- one run
@dataclass
class Outcome:
    family: str
    seed: int
    kind: str  # exact | refused | denied | BAD
    why: str
    mutations: list[str]

    @property
    def known_open(self) -> bool:
        """A BAD run whose wrong answer is one this tool names as known open (``KNOWN_OPEN``)."""
        return self.kind == "BAD" and any(k in self.why for k in KNOWN_OPEN)

    def describe(self) -> str:
        steps = "\n".join(f"    {m}" for m in self.mutations)
        return f"{self.kind} family={self.family} seed={self.seed}: {self.why}\n  mutations:\n{steps}"


def _results(lab: Lab, wid: str) -> tuple[int, dict[int, Any] | None, str]:
    path = lab.root / f"{wid}.results.jsonl"
    path.unlink(missing_ok=True)
    code, _, err = lab.cli("results", wid, "--output", str(path))
    if code != 0:
        return code, None, err.strip()
    got: dict[int, Any] = {}
    for line in path.read_text().splitlines():
        d = json.loads(line)
        if d["id"] in got:
            return 0, None, f"record {d['id']} appears twice in 'rqp results'"
        got[d["id"]] = d["result"]
    return 0, got, ""


def _exact(lab: Lab, wid: str, n: int, failing: set[int], serve: Serve) -> str | None:
    """None when workload ``wid`` ended exactly right and every report agrees; else what is wrong."""
    from rqp.summary import read_summary

    run = serve.opened.get(wid)
    if run is None:
        return "never opened"
    s = read_summary(lab.store, run.workload)
    want_done, want_failed = n - len(failing), len(failing)
    extra = {f.id for f in s.failures if f.id not in failing}
    loud = {f.id for f in s.failures if f.id in extra and AUTH_REASON.search(f.error or "")}
    if extra and (s.total, s.done + len(extra), s.failed - len(extra), s.cancelled) == (n, want_done, want_failed, 0):
        failing = failing | extra  # records failed (exit 1, each with its reason): checked as such below
        want_done, want_failed = n - len(failing), len(failing)
    else:
        extra = loud = set()
    if (s.total, s.done, s.failed, s.cancelled) != (n, want_done, want_failed, 0):
        return f"sealed summary says total={s.total} done={s.done} failed={s.failed} cancelled={s.cancelled} for {n} records"
    code, got, err = _results(lab, wid)
    if code == ROUND_UNCHECKED:
        return f"{UNVERIFIED}: 'rqp results' exits {code}: {err}"
    if code != 0:
        return f"'rqp results' exits {code}: {err}"
    want = {i: i * 2 for i in range(n) if i not in failing}
    if got != want:
        missing, surplus = sorted(set(want) - set(got or {})), sorted(set(got or {}) - set(want))
        return f"'rqp results' has wrong lines: missing {missing[:5]}, extra {surplus[:5]}"
    # rqp-scheduler run exits by the sealed summary its run ended with (never Redis's counters)
    ended = serve.sched.summaries.get(wid)
    if ended is None:
        return f"{UNVERIFIED}: 'rqp-scheduler run' exits 4: the sealed summary of {wid} cannot be read"
    exit_code = 1 if ended.failed or ended.final_state == "cancelled" else 0
    if (ended.final_state, ended.done, ended.failed) != ("done", s.done, s.failed) or exit_code != (
        1 if failing else 0
    ):
        shown = (ended.final_state, ended.done, ended.failed, ended.total)
        return f"rqp-scheduler run would exit {exit_code} saying {shown}; the sealed summary says done={s.done} failed={s.failed}"
    code, out, err = lab.cli("status", wid, "--json")
    if code not in (0, 1, 3, 4):
        return f"'rqp status --json' exits {code}: {err.strip()}"
    st = json.loads(out)
    if code == 4 and st.get("verified") is False:
        # Redis's shown state says ended, no sealed summary vouches for it: not a report of fact
        return f"{UNVERIFIED}: 'rqp status' exits 4, counts marked unverified"
    if code in (3, 4) and st.get("state") != "done":
        # a shown state a Redis writer set on an ended workload nobody supervises: rqp says it is not
        # done (exit 3) or failed (exit 4), never a success -- a denial of service, not a lie
        return f"{DENIED}: 'rqp status' exits {code} showing state {st.get('state')} (the sealed summary says done)"
    if (st.get("state"), st.get("done"), st.get("failed"), st.get("total")) != ("done", s.done, s.failed, s.total):
        return (
            f"'rqp status --json' says state={st.get('state')} done={st.get('done')} failed={st.get('failed')} "
            f"total={st.get('total')}; the sealed summary says done={s.done} failed={s.failed} total={s.total}"
        )
    if code != (1 if s.failed else 0):
        return f"'rqp status' exits {code} while the sealed summary has {s.failed} failed"
    if extra and loud == extra:
        return f"{LOUD}: records {sorted(loud)[:5]} failed naming the integrity failure, exit 1"
    if extra:
        why = next(f.error for f in s.failures if f.id in extra - loud)
        return f"{DENIED}: records {sorted(extra)[:5]} failed (exit 1, counted in every report): {why}"
    return None


def _cancelled_right(lab: Lab, wid: str, serve: Serve) -> str | None:
    """None when a workload an operator cancelled stayed cancelled, its results readable and right
    and its reports in line with its sealed summary; else what is wrong."""
    from rqp.summary import read_summary

    state = lab.r.hget(f"rqp:w:{wid}:meta", "state")
    if state != b"cancelled":
        return f"its state is {state!r}, not cancelled"
    s = read_summary(lab.store, serve.opened[wid].workload)
    if s.done + s.failed + s.cancelled == s.total < VICTIM_RECORDS:
        return (
            f"{CANCEL_SHORT}: sealed summary says total={s.total} done={s.done} failed={s.failed} "
            f"cancelled={s.cancelled} for data of {VICTIM_RECORDS} records"
        )
    if s.done + s.failed + s.cancelled != VICTIM_RECORDS or s.cancelled == 0:
        return f"sealed summary says total={s.total} done={s.done} failed={s.failed} cancelled={s.cancelled}"
    code, got, err = _results(lab, wid)
    if code == ROUND_UNCHECKED:
        return f"{UNVERIFIED}: 'rqp results' exits {code}: {err}"
    if code != 0 or got is None:
        return f"'rqp results' exits {code}: {err}"
    if len(got) != s.done or any(v != i * 2 for i, v in got.items()):
        return f"'rqp results' has {len(got)} lines, {s.done} done in the sealed summary"
    code, out, err = lab.cli("status", wid, "--json")
    st = json.loads(out) if out.strip() else {}
    if (st.get("state"), st.get("done"), st.get("failed")) != ("cancelled", s.done, s.failed):
        return f"'rqp status --json' says {st.get('state')} done={st.get('done')} failed={st.get('failed')}"
    return None


def run_case(lab: Lab, family: str, seed: int, mutations: int = DEFAULT_PER_RUN) -> Outcome:
    """One run: pack, start, mutate at seeded ticks, run to the end, classify. An exception out
    of the roles' or the CLI's own code while reporting is a crash: BAD."""
    import traceback

    done: list[str] = []
    try:
        return _run_case(lab, family, seed, mutations, done)
    except Exception as exc:  # what would crash rqp-scheduler's exit line or a report
        where = traceback.extract_tb(exc.__traceback__)[-1]
        crash = f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno} {where.name})"
        return Outcome(family, seed, "BAD", f"a report crashed: {crash}", done)


def _run_case(lab: Lab, family: str, seed: int, mutations: int, done: list[str]) -> Outcome:
    from rqp import control
    from rqp.ledger import fleet, register_processor

    rng = random.Random(f"{family}:{seed}")
    lab.r.flushdb()
    shutil.rmtree(lab.root / "blobs", ignore_errors=True)
    victim, bystander = f"{family}-v{seed}", f"{family}-b{seed}"
    lab.pack(victim, VICTIM_RECORDS)
    lab.pack(bystander, BYSTANDER_RECORDS)
    ctx = Ctx(lab, victim, bystander, rng)
    # the real things the reports must show: one operator action, one processor
    control.set_priority(lab.r, lab.operator, victim, "normal", "ops@chaos", lab.store)
    ctx.real_audit = [("ops@chaos", "priority normal", victim)]
    register_processor(lab.r, host="chaos", pid=1, protections="rlimits", workers=1, started_at=time.time())
    ctx.real_fleet = {"chaos:1"}
    # half the submissions runs cancel the victim for real (the issue's replay re-ran a cancelled one)
    cancel_at = 4 if family == "submissions" and rng.random() < 0.5 else None
    serve = Serve(lab)
    serve.add(victim)
    serve.add(bystander)
    fam = FAMILIES[family]
    at = sorted(rng.randrange(1, MUTATION_TICKS) for _ in range(mutations))
    job_errors: list[str] = []
    watched = [ctx.k(n) for n in ("meta", "st", "rec", "notes", "spec", "n", "pending", "retry", "parts", "done",
                                  "failed", "perf")] + ["rqp:audit", "rqp:submissions", "rqp:outbox"]  # fmt: skip
    tick = 0
    while tick < MAX_TICKS:
        tick += 1
        if tick % 3 == 1:
            ctx.capture(watched + _existing(ctx, ctx.k("c:*")))
        serve.tick()
        if serve.crashed:
            return Outcome(family, seed, "BAD", f"the scheduler crashed: {serve.crashed}", done)
        if tick == cancel_at:
            control.cancel(lab.r, lab.operator, victim, "ops@chaos")
            ctx.real_audit.insert(0, ("ops@chaos", "cancel", victim))
            done.append(f"tick {tick}: (the harness) rqp cancel {victim}")
        # between the scheduler's step and the workers: chunks are queued, their records in Redis
        pending_followups, ctx.followups = ctx.followups, []
        for followup in pending_followups:
            done.append(f"tick {tick}: {followup()}")
        while at and at[0] == tick:
            at.pop(0)
            try:
                done.append(f"tick {tick}: {fam.mutate(ctx)}")
            except Exception as exc:  # a mutation Redis refused changes nothing
                done.append(f"tick {tick}: (refused by Redis: {exc})")
        job_errors += work(lab)
        if not serve.runs and not at:
            break
    serve.tick()  # a submission pushed last is taken now
    if serve.crashed:
        return Outcome(family, seed, "BAD", f"the scheduler crashed: {serve.crashed}", done)
    for _ in range(MAX_TICKS):
        if not serve.runs:
            break
        serve.tick()
        job_errors += work(lab)
    if serve.crashed:
        return Outcome(family, seed, "BAD", f"the scheduler crashed: {serve.crashed}", done)
    # a run that stopped because its lock or fence was forged (it writes nothing more once it is
    # not its own) waits for its lock to lapse; the service then takes it over. Lapsed here
    # (deleted, as its TTL does) and looked for at once, instead of LAPSED_LOOK_SECONDS on
    stalled = ""
    if victim in serve.sched.elsewhere and victim not in serve.runs:
        stalled = "; its run stopped (lock or fence forged) until the lock lapsed, then the service took it over"
        lab.r.delete(ctx.k("lock"))
        try:
            serve.sched.take_lapsed()
            serve._remember()
        except Exception as exc:  # what would kill 'rqp-scheduler serve'
            return Outcome(
                family, seed, "BAD", f"taking the lapsed lock over crashed: {type(exc).__name__}: {exc}", done
            )
        for _ in range(MAX_TICKS):
            if not serve.runs:
                break
            serve.tick()
            job_errors += work(lab)
        if serve.crashed:
            return Outcome(family, seed, "BAD", f"the scheduler crashed: {serve.crashed}", done)
    # the bystander: untouched, so it must end exactly right
    if bystander in serve.failures:
        return Outcome(family, seed, "BAD", f"the bystander failed: {serve.failures[bystander][1]}", done)
    if bystander in serve.runs:
        return Outcome(family, seed, "BAD", "the bystander did not finish: the scheduler stopped serving it", done)
    wrong = _exact(lab, bystander, BYSTANDER_RECORDS, {FAILING}, serve)
    if wrong:  # even a loud refusal: nothing of the bystander's was touched
        return Outcome(family, seed, "BAD", f"the bystander: {wrong}", done)
    # reports that are not a workload's: the audit log and the fleet
    code, out, _ = lab.cli("audit", "--json")
    entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    # an entry marked unverified is not presented as fact; every other one must be a real action --
    # unless the chain is cut (an entry replayed, removed or moved), which 'rqp audit' shows on the
    # entry and 'rqp audit --verify' fails on, naming where: tamper-evident, not a lie
    as_fact = [(e.get("who"), e.get("what"), e.get("workload")) for e in entries if e.get("verified") is not False]
    flagged = ""
    if as_fact != ctx.real_audit:
        vcode, _, _ = lab.cli("audit", "--verify")
        cuts = [e["cut"] for e in entries if e.get("cut")]
        if not entries and vcode == 0 and lab.r.exists("rqp:audit:head"):
            return Outcome(family, seed, "BAD", f"{AUDIT_EMPTIED}: 'rqp audit --verify' exits 0 with no entry left; "
                           f"the real actions were {ctx.real_audit}", done)  # fmt: skip
        if vcode == 0 or not (cuts or any(e.get("verified") is False for e in entries)):
            return Outcome(family, seed, "BAD", f"'rqp audit' shows {as_fact} as fact; the real actions were "
                           f"{ctx.real_audit} ('rqp audit --verify' exits {vcode})", done)  # fmt: skip
        flagged = f"; the audit chain is flagged ('rqp audit --verify' exits {vcode}: {(cuts or ['unverified'])[0]})"
    listed = {f"{e['host']}:{e['pid']}" for e in fleet(lab.r) if not e.get("self_reported")}
    forged = listed - ctx.real_fleet
    real = [e for e in fleet(lab.r) if f"{e['host']}:{e['pid']}" in ctx.real_fleet]
    if forged or any(e["protections"] != "rlimits" for e in real if not e.get("self_reported")):
        return Outcome(family, seed, "BAD", f"the fleet lists {sorted(forged) or real} as real", done)
    # the victim
    if victim in serve.runs:
        return Outcome(family, seed, "denied", "the victim did not finish (stalled: a denial of service)", done)
    if victim in serve.failures and victim not in serve.sched.summaries:
        code, why = serve.failures[victim]
        if code != 0 and AUTH_REASON.search(why):
            return Outcome(family, seed, "refused", f"exit {code}: {why[:200]}", done)
        return Outcome(
            family, seed, "BAD", f"the victim failed (exit {code}) naming no authentication failure: {why}", done
        )
    state = lab.r.hget(ctx.k("meta"), "state")
    if state is None or victim not in serve.opened:
        return Outcome(family, seed, "BAD", "the victim's state is gone and nothing said why", done)
    if cancel_at is not None:
        wrong = _cancelled_right(lab, victim, serve)
        if wrong and wrong.startswith(UNVERIFIED):
            return Outcome(family, seed, "refused", f"the cancelled victim: {wrong}" + flagged, done)
        if wrong:
            return Outcome(family, seed, "BAD", f"the cancelled victim: {wrong}", done)
        kind = "refused" if flagged else ("denied" if stalled else "exact")
        return Outcome(family, seed, kind, "cancelled; every result right" + flagged + stalled, done)
    wrong = _exact(lab, victim, VICTIM_RECORDS, {FAILING}, serve)
    if wrong and wrong.startswith((LOUD, UNVERIFIED)):
        return Outcome(family, seed, "refused", wrong + flagged, done)
    if wrong and wrong.startswith(DENIED):
        return Outcome(family, seed, "denied", wrong + flagged, done)
    if wrong:
        # a refusal by the reader (rqp results / status naming the authentication failure) is one
        if "exits" in wrong and AUTH_REASON.search(wrong):
            return Outcome(family, seed, "refused", wrong, done)
        return Outcome(family, seed, "BAD", f"the victim: {wrong}", done)
    # rqp retry --failed must run the sealed summary's failed records, no other
    code, out, err = lab.cli("retry", victim, "--failed")
    if code != 0:
        if AUTH_REASON.search(err):
            return Outcome(family, seed, "refused", f"'rqp retry --failed' exits {code}: {err.strip()[:200]}", done)
        return Outcome(family, seed, "BAD", f"'rqp retry --failed' exits {code} naming no authentication failure: "
                       f"{err.strip()}", done)  # fmt: skip
    if not out.startswith(f"re-queued 1 failed records of {victim}"):
        return Outcome(
            family, seed, "BAD", f"'rqp retry --failed' says {out.strip()!r}; the sealed summary lists 1", done
        )
    if flagged:
        return Outcome(family, seed, "refused", "every result right" + flagged, done)
    if stalled:
        return Outcome(family, seed, "denied", "every result right, every report agrees" + stalled, done)
    return Outcome(family, seed, "exact", "every result right, every report agrees", done)


# ---------------------------------------------------------------------- many runs
def campaign(lab: Lab, total: int, per_run: int, families: list[str], first_seed: int = 1) -> Iterator[Outcome]:
    """Runs round-robin over ``families`` until ``total`` mutations are spent."""
    spent, seed = 0, first_seed
    while spent < total:
        for family in families:
            if spent >= total:
                return
            yield run_case(lab, family, seed, per_run)
            spent += per_run
        seed += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="tools/chaos.py")
    ap.add_argument("--mutations", type=int, default=DEFAULT_MUTATIONS, help="mutations in all (default %(default)s)")
    ap.add_argument("--per-run", type=int, default=DEFAULT_PER_RUN, help="mutations per run (default %(default)s)")
    ap.add_argument("--family", action="append", choices=sorted(FAMILIES), help="only these families (repeatable)")
    ap.add_argument("--seed", type=int, default=1, help="the first run's seed (default %(default)s)")
    ap.add_argument("--redis-url", help="a Redis to use (its database is flushed!) instead of starting one")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every run")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.CRITICAL)  # the roles' own warnings are expected here
    families = args.family or list(FAMILIES)
    counts: dict[str, Counter[str]] = {f: Counter() for f in families}
    bad: list[Outcome] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rqp-chaos-") as tmp:
        lab = Lab(Path(tmp), args.redis_url)
        try:
            for out in campaign(lab, args.mutations, args.per_run, families, args.seed):
                counts[out.family][out.kind] += 1
                if out.kind == "BAD":
                    bad.append(out)
                if args.verbose or out.kind == "BAD":
                    print(out.describe(), flush=True)
        finally:
            lab.close()
    kinds = ("exact", "refused", "denied", "BAD")
    print(f"\n{args.mutations} mutations, {args.per_run} a run, in {time.monotonic() - started:.0f}s")
    known = {f: sum(1 for o in bad if o.family == f and o.known_open) for f in families}
    print(f"{'family':<12}" + "".join(f"{k:>9}" for k in kinds) + "  of the BAD, known open")
    for f in families:
        print(f"{f:<12}" + "".join(f"{counts[f][k]:>9}" for k in kinds) + f"  {known[f]}")
    total = Counter[str]()
    for c in counts.values():
        total.update(c)
    print(f"{'all':<12}" + "".join(f"{total[k]:>9}" for k in kinds) + f"  {sum(known.values())}")
    unexpected = [o for o in bad if not o.known_open]
    if bad:
        print(
            f"{len(bad)} BAD runs ({len(bad) - len(unexpected)} of them known open: {'; '.join(KNOWN_OPEN)}); each is printed above"
        )
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT / "tests")]
    sys.exit(main())
