"""The trust table: every key and hash field any rqp role, CLI command or the console writes to
Redis, who writes and reads it, what it drives, and what protects it against a Redis writer who
holds the password and no key.

Why a table in code: SECURITY.md's promise about Redis writers holds only for values someone has
looked at. ``tests/security/test_trust_table.py`` runs a workload through every feature and fails
when Redis holds a key or field no row names, so a new field cannot land without its row; the
same test checks that SECURITY.md's table is this one (``python -m rqp.ledger.trust_table``
prints it, ``... --write SECURITY.md`` puts it between the file's markers). ``tests/security/test_redis_fuzz.py`` mutates the rows' keys.

Protection classes:

* ``sealed``      AES-GCM under the workload's data key, bound to what it is (purpose, item):
                  a forged, altered or moved value does not open.
* ``signed``      an Ed25519 signature by a trusted key.
* ``derived``     plain, but rqp checks it against sealed state before it acts on it, or it only
                  schedules work whose effect sealed state arbitrates.
* ``advisory``    plain, drives no decision, and is labelled as unverified where it is shown.
* ``UNPROTECTED`` plain and shown as fact: a Redis writer changes what rqp shows. Each such row
                  says (``issue``) what it moves and why that is never a result, a record
                  count or an exit code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["BEGIN", "END", "PROTECTIONS", "ROWS", "Row", "find", "render_markdown", "write_into"]

PROTECTIONS = ("sealed", "signed", "derived", "advisory", "UNPROTECTED")

#: how a workload id, a job id, a chunk, a record id and a worker look in a key or field
_W = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_ANY = r".+"


@dataclass(frozen=True)
class Row:
    """One key pattern (and, for a hash, one field pattern) of the table."""

    #: the key as people read it, ``<W>`` for a workload id
    key: str
    #: full-match regex on the key name
    key_re: str
    #: Redis type: hash, string, list, zset, stream, set, bitmap (a string)
    type: str
    #: hash field as people read it ("" for a key that is not a hash, "*" for any field)
    field: str
    #: full-match regex on the hash field ("" when not a hash)
    field_re: str
    writers: str
    readers: str
    drives: str
    protection: str
    #: for UNPROTECTED rows: why a Redis writer who changes it cannot change a result, a count or an
    #: exit code -- what it does move
    issue: str = ""
    #: the tests that check the claim (files under tests/security, ``[family]`` of the fuzzer)
    test: str = ""

    def matches_key(self, key: str) -> bool:
        return re.fullmatch(self.key_re, key) is not None

    def matches_field(self, field: str) -> bool:
        return re.fullmatch(self.field_re, field) is not None


def _w(name: str) -> str:
    return rf"rqp:w:{_W}:{name}"


#: the tests behind the claims (tests/security/...)
_III = "test_redis_writer_iii.py"
_IV = "test_redis_writer_iv.py"
_SC = "test_signed_control.py"
_FUZZ = "test_redis_fuzz.py"
_BW = "test_blob_writer_rounds.py"

_SCHED = "scheduler"
_PROC = "processor"
_CLI = "rqp CLI"
_CONSOLE = "console"

ROWS: tuple[Row, ...] = (
    # ------------------------------------------------------------------ rqp:w:<W>:meta
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "state", "state", f"{_SCHED}, post_control.lua ({_CLI}, {_CONSOLE} actions)",
        f"{_SCHED}, {_CLI} status/list/results, {_CONSOLE}, serving scheduler (resume)",
        "shown state only: the scheduler acts on the verified requests and puts a forged state back, a made-up "
        "one too (recorded in rqp:rejected); Workload.wait() ends only on a known final state, a made-up one is "
        "shown verified=False; an ended workload (sealed head closed) is never run again; status/list of an ended "
        "workload report the sealed summary, or say unverified and exit 4; a state forged on an ended workload "
        "nobody supervises makes rqp status say unfinished (exit 3) or failed (exit 4), never a success",
        "derived", test=f"{_III}::test_1, {_III}::test_6, {_IV}::test_f2_a_made_up_state_is_put_back_and_recorded, "
        f"{_SC}, {_FUZZ}[control]"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "control", "control", f"post_control.lua ({_CLI}, {_CONSOLE} actions)",
        _SCHED, "nothing: kept for schedulers from before signed control; the scheduler puts a forged one back "
        "and records it", "derived", test=f"{_III}::test_1, {_FUZZ}[control]"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "priority", "priority", f"{_SCHED} (from the signed request), {_CLI} priority",
        f"{_CLI} status, {_CONSOLE}", "shown only; chunks are queued at the priority of the verified requests",
        "advisory", test=f"{_SC}, {_FUZZ}[control]"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "head", "head", _SCHED,
        f"{_SCHED}, {_CLI} retry/status/results/verify, client, {_CONSOLE}",
        "what is enqueued, when the data is exhausted, the round, whether the workload ended; the summary's total; "
        "readers refuse a sealed summary (and its signed root) of an older round than it says",
        "sealed", test=f"{_FUZZ}[sealed], {_BW}::test_f0_round_1_blobs_put_back_after_a_retry_round_are_refused_by_every_reader"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "beat", "beat", _SCHED, _SCHED,
        "a rollback noticed (a beat older than the scheduler wrote last): chunks leased before it re-run at once; an "
        "earlier beat put back, junk or a delete only re-runs that workload's chunks in flight", "sealed",
        test=f"{_FUZZ}[sealed]"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "pin", "pin", _SCHED, _SCHED,
        "a workload replaced while unfinished is refused", "sealed", test=f"{_FUZZ}[sealed]"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "error_sealed", "error_sealed", _SCHED, f"{_CLI} status (with the KEK)",
        "the full error of a failed workload", "sealed", test=f"{_FUZZ}[sealed]"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "enqueued, chunks, total",
        "enqueued|chunks|total", _SCHED, f"{_CLI} status/list, {_CONSOLE}",
        "progress while it runs; an ended workload's counts come from the sealed summary (the sealed head "
        "governs what is enqueued); junk reads as missing", "derived", test=f"{_FUZZ}[progress]"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "started_at, finished_at", "started_at|finished_at", _SCHED,
        f"{_CLI} status, {_CONSOLE}, summary's elapsed time", "times shown and sealed into the summary",
        "UNPROTECTED", "moves only the elapsed time and rate shown (and sealed into the summary), never a count, a "
        "result or an exit code; junk reads as missing"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "read_bytes, data_bytes", "read_bytes|data_bytes", _SCHED,
        f"{_CLI} status, {_CONSOLE}", "how much of the data is read, shown (a percentage and an ETA) while the "
        "total is unknown", "UNPROTECTED", "moves only the reading percentage and ETA shown while the data is "
        "read; the sealed head governs what is enqueued; junk, a negative or a zero size reads as missing",
        test=f"{_FUZZ}[progress]"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "error, processor_error", "error|processor_error", f"{_SCHED}, {_PROC}",
        f"{_CLI} status, {_CONSOLE}, {_SCHED} (the reason given to records of a chunk given up)",
        "the reason shown for a failed or stuck workload or chunk", "UNPROTECTED",
        "moves only the text of a failure that happened (the full error is error_sealed); never which records "
        "failed, a count or an exit code"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "reclaimed", "reclaimed", _SCHED,
        f"{_CONSOLE}, the summary's reclaimed_chunks", "a count of re-queued chunks shown and sealed into the summary",
        "UNPROTECTED", "moves only the reclaimed-chunks figure (operations, not records): never a record count, a "
        "result or an exit code; junk reads as 0"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "preempted", "preempted", _SCHED,
        f"{_CLI} status, {_CONSOLE}, the summary's requeued_after_preemption",
        "records requeued after a preemption or drain, shown apart from failed attempts and sealed into the summary",
        "UNPROTECTED", "moves only the requeued-after-preemption figure (operations, not attempts): never which "
        "records ran, a result, a done or failed count or an exit code; junk, a negative number or more than "
        "100 per record reads as 0",
        test=f"{_FUZZ}[drained], {_IV}::test_f5_forged_drained_seconds_and_preempted_stay_out_of_the_sealed_summary"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "drained_seconds:<host>", r"drained_seconds:.+",
        f"{_PROC} supervisor (drain)", f"{_SCHED}, the summary's drained_seconds_by_vm, {_CONSOLE}",
        "processor-seconds of chunks a VM's drains handed back (what its evictions cost), sealed into the summary",
        "UNPROTECTED", "moves only the evictions' cost shown by VM: never which records ran, a result, a count or "
        "an exit code; junk, a negative number or more than a year is left out, and so is a non-finite sum by VM "
        "(the summary stays strict JSON)",
        test=f"{_FUZZ}[drained]"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "results_sha256", "results_sha256", _SCHED, f"{_CLI} status",
        "shown; rqp results checks the sealed summary's digest, not this", "derived", test=f"{_FUZZ}[sealed]"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "format, signer, scheduler, max_attempts",
        "format|signer|scheduler|max_attempts", _SCHED, f"{_CLI} status, {_CONSOLE}",
        "shown only; the signed manifest and the sealed specs are what roles act on", "UNPROTECTED",
        "moves only labels shown in status; roles act on the signed manifest and the sealed specs"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "retry_seq", "retry_seq", _SCHED, _SCHED,
        "names the next retry chunk; its sealed spec and START/COMMIT decide what it runs", "derived",
        test=f"{_FUZZ}[derived]"),
    # ------------------------------------------------------------------ signed control
    Row("rqp:w:<W>:control", _w("control"), "list", "", "", f"post_control.lua ({_CLI}, {_CONSOLE} actions)",
        _SCHED, "pause, resume, cancel, retry, priority: only requests signed by a trusted operator or the "
        "workload's submitter, for this workload, fresh and not replayed, count; others are refused and recorded",
        "signed", test=f"{_SC}, {_III}::test_1, {_FUZZ}[control]"),
    # ------------------------------------------------------------------ records in flight
    Row("rqp:w:<W>:c:<chunk>", _w(r"c:[A-Za-z0-9]+"), "string", "", "", _SCHED, f"{_PROC} (start), {_SCHED} (reclaim)",
        "the records a worker runs: one AES-GCM value under the chunk's own key whose AAD binds the workload, the "
        "chunk and the exact ids it holds (rqp.chunk_records; a workload queued before the upgrade: one seal per "
        "record); a value swapped, cut, grown, re-sized or with its ids edited fails authentication as a whole, and "
        "its records fail with that one-line reason; a value that does not unpack fails that workload (or those "
        "records) loudly, and the others go on", "sealed",
        test=f"{_III}::test_7, {_FUZZ}[chunk], {_FUZZ}[chunk-value], test_chunk_records.py"),
    Row("rqp:w:<W>:rec", _w("rec"), "hash", "<record id>", r"\d+", f"{_PROC} (commit), {_SCHED}",
        f"{_PROC}, {_CLI} retry", "the records of retry chunks", "sealed", test=f"{_FUZZ}[sealed]"),
    Row("rqp:w:<W>:st", _w("st"), "hash", "<record id>", r"\d+", f"{_PROC}, {_SCHED}",
        f"{_CLI} status --record, results --failed, {_CONSOLE}, consolidation", "a record's status", "sealed",
        test=f"{_FUZZ}[sealed]"),
    Row("rqp:w:<W>:notes", _w("notes"), "hash", "<chunk>|<first>|<last>", r"[A-Za-z0-9]+\|\d+\|\d+", _PROC,
        f"consolidation, {_CLI} status --record", "which records a committed chunk did", "sealed",
        test=f"{_FUZZ}[sealed]"),
    Row("rqp:w:<W>:done", _w("done"), "bitmap", "", "", _PROC, f"{_PROC} (start), status --record",
        "refuses a replayed job; checked against the sealed notes at consolidation", "derived",
        test=f"{_FUZZ}[derived]"),
    Row("rqp:w:<W>:failed", _w("failed"), "bitmap", "", "", f"{_PROC}, {_SCHED}",
        f"{_PROC} (start), consolidation",
        "a record marked failed is refused at START (fails loudly, counted in every report); rqp retry --failed "
        "takes the failed set from the sealed summary, not from this", "derived",
        test=f"{_III}::test_4, {_FUZZ}[failed]"),
    Row("rqp:w:<W>:pending", _w("pending"), "zset", "", "", f"{_SCHED}, {_PROC}", f"{_SCHED}, {_PROC}",
        "leases; START/COMMIT accept only a job in it with its sealed spec; a member that is not one of the "
        "workload's job ids is dropped by the reclaimer and recorded in rqp:rejected", "derived",
        test=f"{_III}::test_10, {_FUZZ}[derived]"),
    Row("rqp:w:<W>:spec", _w("spec"), "hash", "<job id>", _ANY, _SCHED, f"{_PROC}, {_SCHED} (reclaim)",
        "what a job runs", "sealed", test=f"{_FUZZ}[sealed]"),
    Row("rqp:w:<W>:parts", _w("parts"), "hash", "<chunk>", r"[A-Za-z0-9]+", _PROC, "consolidation",
        "which result part a chunk committed; every result in it is checked", "derived", test=f"{_FUZZ}[derived]"),
    Row("rqp:w:<W>:retry", _w("retry"), "zset", "", "", f"{_PROC}, {_SCHED}", _SCHED,
        "retries due; only those a sealed commit asked for run", "derived", test=f"{_FUZZ}[derived]"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "processing", "processing", f"{_PROC}, {_SCHED}",
        f"{_CLI} status, {_CONSOLE}, metrics", "records in flight shown while it runs (0 once ended)", "advisory",
        test=f"{_FUZZ}[counters]"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "done, failed", "done|failed", f"{_PROC}, {_SCHED}",
        f"{_CLI} status/list, {_CONSOLE}, metrics",
        "progress while it runs; rqp-scheduler run's exit code and line, and status/list of an ended workload, "
        "come from the sealed summary (or say unverified, exit 4); junk reads as 0", "derived",
        test=f"{_III}::test_2, {_FUZZ}[counters]"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "j:<job id>", r"j:.+", _PROC, f"{_PROC}, {_SCHED}",
        "the size a job added to processing (the in-flight figure only)", "advisory", test=f"{_FUZZ}[counters]"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "s:<job id>", r"s:.+", _PROC, f"{_CLI} status --record",
        "when and where a record started", "sealed"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "e:<job id>", r"e:.+", _PROC, _SCHED,
        "the error given to the records of a chunk given up", "UNPROTECTED",
        "moves only the text of the error of records that did fail (a chunk given up after its attempts); never "
        "which records failed, a count or an exit code"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "r:<job id>", r"r:.+", _PROC, _SCHED,
        "a chunk handed back untouched is re-queued without counting an attempt", "derived",
        test=f"{_FUZZ}[derived]"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "d:<job id>", r"d:.+", f"{_PROC} supervisor (drain)", f"{_SCHED} (reclaim)",
        "a chunk handed back by a draining processor (eviction, SIGTERM, scale-in) is re-queued without spending "
        "an attempt or a free re-run; only a chunk whose lease ended, and what runs and commits stays the sealed "
        "spec's and START/COMMIT's (a forged mark lets a record that kills its worker re-run without spending "
        "attempts: that one workload stalls)", "derived",
        test=f"{_FUZZ}[drained]"),
    Row("rqp:w:<W>:perf", _w("perf"), "hash", "records, seconds, last, first, cpu, cpu_records",
        "records|seconds|last|first|cpu|cpu_records", _PROC,
        f"{_SCHED} (adaptive chunk size), {_CLI} status rate/ETA, summary's throughput",
        "chunk sizes and the run's throughput (rqp.throughput) shown and sealed into the summary; junk (not a "
        "number, not finite, not UTF-8) reads as missing; junk in cpu or cpu_records is overwritten by the next "
        "commit", "UNPROTECTED",
        "moves only chunk sizes and the rate/ETA shown (and the summary's records_per_second): never a count, a "
        "result or an exit code",
        test=f"{_III}::test_8, {_III}::test_9, {_FUZZ}[progress]"),
    Row("rqp:w:<W>:lock", _w("lock"), "string", "", "", f"{_SCHED} (take_lock.lua, renew_lock.lua)", _SCHED,
        "which scheduler supervises the workload (a holder is waited for until its lock lapses; a serving "
        "scheduler then takes it over). Forged or junk, it stops the run that holds it (a stall until the forged "
        "lock lapses: one without a TTL is given one, one not a string is deleted); deleted, the holder takes it "
        "back at its next renewal, unless a serving scheduler's look takes the workload over first (the holder "
        "then stops, writing nothing more: a change of supervisor, results right)", "derived",
        test=f"{_FUZZ}[derived], {_FUZZ}[lock], test_run_fence.py"),
    Row("rqp:w:<W>:fence", _w("fence"), "string", "", "", f"{_SCHED} (take_lock.lua)",
        f"{_SCHED} (every write of the workload's run: WATCH and check)",
        "the latest scheduler to take the workload's lock (\"<generation> <holder>\"): a scheduler whose lock "
        "was taken over writes nothing more to the workload. Forged, junk or deleted, it stops the run (a stall "
        "until its lock lapses and a serving scheduler takes it over, one generation on); results stay right, "
        "every effect being arbitrated by the workload's sealed state", "derived",
        test=f"{_FUZZ}[lock], test_run_fence.py"),
    Row("rqp:w:<W>:blind", _w("blind"), "hash", "<host:pid>", _ANY, _PROC, f"{_CLI} status, {_CONSOLE}",
        "why a processor cannot open the workload, shown", "UNPROTECTED",
        "moves only a hint shown while a workload runs; drives no decision"),
    # ------------------------------------------------------------------ shared by every workload
    Row("rqp:workloads", r"rqp:workloads", "zset", "", "", _SCHED, f"{_CLI} list, {_CONSOLE}, serving scheduler",
        "which workloads are listed and resumed (each one's own state is then opened)", "derived",
        test=f"{_FUZZ}[derived]"),
    Row("rqp:submissions", r"rqp:submissions", "list", "", "", f"{_CLI} submit/pack --submit, post_control.lua",
        "serving scheduler", "which workloads a serving scheduler starts: one whose sealed head is closed (ended) "
        "is never run again, only a signed retry re-opens it; nor is one whose keys were deleted while its sealed "
        "summary of the same generation and of its current round (the sealed round marker round.enc) exists, "
        "whatever checkpoints were put back (recorded in rqp:rejected; a --replace generation starts; a retry round "
        "lost with Redis runs again from the summary before it)", "derived",
        test=f"{_III}::test_6, {_IV}::test_f6_a_cancelled_workload_whose_keys_were_deleted_is_not_run_again, "
        f"{_BW}::test_f1_stale_checkpoints_after_a_redis_wipe_never_reopen_a_done_workload, "
        f"{_BW}::test_a_retry_round_lost_with_redis_resumes_and_an_ended_one_does_not, {_FUZZ}[submissions]"),
    Row("rqp:priorities", r"rqp:priorities", "hash", "<W>", _W, f"{_CLI} priority, {_CONSOLE}", "nobody acts on it",
        "kept beside the shown priority; the chunks' queue comes from the verified requests", "advisory",
        test=f"{_FUZZ}[control]"),
    Row("rqp:audit", r"rqp:audit", "list", "", "", f"post_control.lua ({_CLI}, {_CONSOLE} actions)",
        f"{_CLI} audit (--verify), {_CLI} results/status of a deleted workload, {_CONSOLE}",
        "who did what: the signed requests, hash-chained; an entry that does not verify is marked so, a cut "
        "chain is shown and fails --verify (open: a list emptied entirely still verifies)", "signed",
        test=f"{_III}::test_3, {_FUZZ}[audit]"),
    Row("rqp:audit:head", r"rqp:audit:head", "string", "", "", "post_control.lua", f"{_CLI} audit, post_control.lua",
        "the hash of the newest audit entry: newer entries removed show as a cut", "derived",
        test=f"{_FUZZ}[audit]"),
    Row("rqp:tombstones", r"rqp:tombstones", "hash", "<manifest digest>", r"[0-9a-f]{64}",
        f"{_CLI} delete, {_CONSOLE} delete", "the roles (rqp.backends.check_tombstone)",
        "a deleted workload's signed blobs uploaded again are refused", "UNPROTECTED",
        "HDEL lets a deleted workload's own signed blobs, uploaded again, run again (what its submitter signed, "
        "not a forgery; its results are its own); HSET refuses a workload (a denial)"),
    Row("rqp:rejected", r"rqp:rejected", "list", "", "", f"{_PROC}, {_SCHED}", f"{_CLI} rejected, {_CONSOLE}",
        "the refused jobs and requests shown", "UNPROTECTED",
        "drives no decision: a forged entry shows a refusal that did not happen, a deleted one hides one"),
    Row("rqp:refused", r"rqp:refused", "hash", "<W>", _W, f"{_SCHED}, {_CLI} submit --again (HDEL)",
        f"{_CLI} status/list/submit, {_CONSOLE}",
        "why the scheduler refused a submission (shown as state refused, exit 4); the scheduler never reads it, "
        "and a workload's start removes it; shown only for a workload Redis holds no state of and whose manifest "
        "is the one refused, labelled unverified: a forged entry shows a packed workload refused, and "
        "'rqp submit' asks for --again (never a success exit, never a running or ended workload); HDEL hides one",
        "advisory", test=f"{_FUZZ}[refused]"),
    Row("rqp:outbox", r"rqp:outbox", "hash", "<message id>", _ANY, f"{_PROC}, {_SCHED}", _SCHED,
        "status and event messages published; the payload is sealed to its queue, kind and id", "sealed",
        test=f"{_FUZZ}[derived]"),
    Row("rqp:outbox:t", r"rqp:outbox:t", "zset", "", "", f"{_PROC}, {_SCHED}", _SCHED,
        "when an outbox entry is old enough to publish", "derived", test=f"{_FUZZ}[derived]"),
    Row("rqp:held:<host:pid>", r"rqp:held:.+", "string", "", "", f"{_PROC} (start)", f"{_PROC} supervisor",
        "ends the lease of a dead worker's chunk at once (the chunk re-runs under START/COMMIT)", "derived",
        test=f"{_FUZZ}[derived]"),
    Row("rqp:vm:<host>", r"rqp:vm:.+", "string", "", "", f"{_PROC} supervisor (start)", f"{_SCHED} (summary)",
        "which VM a processor host (a container) runs on and whether it is Spot: the summary's and the console's "
        "processor-seconds by VM are grouped and labelled by it",
        "UNPROTECTED", "moves only which VM name and spot/regular label a host's processor-seconds are shown under "
        "(the seconds come from the sealed chunk notes): never a result, a count or an exit code; junk reads as "
        "the host itself, unlabelled",
        test=f"{_FUZZ}[drained]"),
    Row("rqp:scheduler:leader", r"rqp:scheduler:leader", "string", "", "", "serving scheduler (leader_*.lua)",
        "serving schedulers (rqp_scheduler.leader)",
        "which serving scheduler leads (\"<generation> <holder>\", a TTL): a standby takes over when it lapses. "
        "A forged or deleted lease only changes which scheduler schedules, or stalls scheduling: a forged lease "
        "stops the current leader, which exits 75 (EX_TEMPFAIL) for its supervisor to restart it as standby; a "
        "writer who keeps forging it stalls scheduling (one without a TTL is given one lease of life, one not "
        "a string is taken over at once; a generation that is not digits, or not below 2^53, reads as 0); "
        "results stay right, every effect being arbitrated by each workload's sealed state",
        "derived", test=f"{_FUZZ}[leader]"),
    Row("rqp:scheduler:leader:fence", r"rqp:scheduler:leader:fence", "string", "", "",
        "serving scheduler (leader_take.lua)", "serving schedulers (every write: WATCH and check)",
        "the latest leader's \"<generation> <holder>\": a scheduler whose lease was taken writes nothing. "
        "Forged, it stops the leader (re-written with its own value, a write it discarded is sent again), "
        "which exits 75 for its supervisor "
        "to restart it as standby (a stall until a scheduler takes the lease again), or lets a "
        "stale one write beside the new one: still arbitrated by the sealed state, never a wrong result",
        "derived", test=f"{_FUZZ}[leader]"),
    Row("rqp:fleet", r"rqp:fleet", "zset", "", "", _PROC, f"{_CONSOLE} fleet, metrics",
        "which processors are listed as alive, each labelled self-reported", "advisory",
        test=f"{_III}::test_5, {_FUZZ}[fleet]"),
    Row("rqp:fleet:<host:pid>", r"rqp:fleet:.+", "hash", "host, pid, workers, protections, started_at, seen_at",
        "host|pid|workers|protections|started_at|seen_at", _PROC, f"{_CONSOLE} fleet, metrics",
        "a processor's host, workers and sandbox protections, shown labelled self-reported (self_reported=True)",
        "advisory", test=f"{_III}::test_5, {_FUZZ}[fleet]"),
    Row("rqp:mq:<queue> (status, events)", r"rqp:mq:(?!rqp-metrics$)[A-Za-z0-9_-]+", "stream", "b", "b",
        f"{_SCHED}, {_PROC} (outbox)", f"{_CLI} messages, consumers",
        "status and event messages; the payload is sealed to its queue, kind and id -- but for the scheduler's "
        "'refused' event, plain (the workload's key is what could not be trusted) and opened as verified=False; "
        "a key of another type stalls its messages in the outbox (recorded once in rqp:rejected), never fails a "
        "workload", "sealed", test=f"{_BW}::test_f8_a_junk_events_stream_stalls_its_events_and_fails_no_workload"),
    Row("rqp:mq:rqp-metrics", r"rqp:mq:rqp-metrics", "stream", "b", "b", "rqp-metrics-logger", f"{_CLI} metrics",
        "host metrics samples, shown", "UNPROTECTED", "host metrics only: no workload's result, count or state"),
    # ------------------------------------------------------------------ RQ's own keys
    Row("rq:job:<job id>", r"rq:job:.+", "hash", "data", "data", f"{_SCHED} (RQ enqueue)", f"{_PROC} (RQ worker)",
        "which job a worker runs; its sealed spec must be the one in pending/spec (START)", "derived",
        test=f"{_FUZZ}[derived]"),
    Row("rq:job:<job id>", r"rq:job:.+", "hash", "* (RQ's bookkeeping)", r"(?!data$).+", "RQ", f"RQ, {_SCHED}",
        "a job RQ lost or failed is reclaimed and re-run; START/COMMIT arbitrate", "derived",
        test=f"{_FUZZ}[derived]"),
    Row("rq:worker:<name>", r"rq:worker:.+", "hash", "* (RQ's worker registry)", _ANY, f"RQ ({_PROC} workers)",
        f"{_CONSOLE} fleet, {_PROC} supervisor",
        "which RQ workers the console lists, on which host; the supervisor unregisters those of its host "
        "whose name's start token matches no live process here", "UNPROTECTED",
        "shown on the console's fleet page beside processors labelled self-reported; a forged entry can only "
        "get itself unregistered (a live worker's token matches its process): drives no other decision"),
    Row("rq:* (queues, registries, results)", r"rq:(?!job:|worker:).+", "any", "*", _ANY, "RQ",
        f"RQ, {_SCHED}", "delivery of jobs only: what runs and counts is decided by START/COMMIT", "derived",
        test=f"{_FUZZ}[derived]"),
)  # fmt: skip


def find(key: str, field: str | None = None) -> Row | None:
    """The row naming ``key`` (and ``field``, for a hash field), or None when none does."""
    for row in ROWS:
        if not row.matches_key(key):
            continue
        if field is None or row.matches_field(field):
            return row
    return None


_HEADER = ("Key", "Type", "Field", "Written by", "Read by", "Drives", "Protection", "Test")


def _cell(s: str) -> str:
    return s.replace("|", "\\|")


def render_markdown() -> str:
    """SECURITY.md's trust table, from ``ROWS``."""
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "|".join("---" for _ in _HEADER) + "|"]
    for row in ROWS:
        protection = f"**UNPROTECTED**: {row.issue}" if row.protection == "UNPROTECTED" else row.protection
        cells = (f"`{row.key}`", row.type, f"`{row.field}`" if row.field else "", row.writers, row.readers, row.drives,
                 protection, row.test)  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


#: where SECURITY.md holds the rendered table
BEGIN = "<!-- trust-table:begin (generated: python -m rqp.ledger.trust_table) -->\n"
END = "<!-- trust-table:end -->"


def write_into(path: str) -> None:
    """Replace the table between SECURITY.md's markers with ``render_markdown()``."""
    from pathlib import Path  # noqa: PLC0415 - only this command needs it

    text = Path(path).read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(
            f"{path} has no trust-table markers ({BEGIN.strip()} ... {END}); add them where the table goes"
        )
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    Path(path).write_text(head + BEGIN + render_markdown() + END + tail)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--write"] and len(sys.argv) == 3:
        write_into(sys.argv[2])
    else:
        print(render_markdown(), end="")
