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
* ``UNPROTECTED`` plain and acted on or reported as fact: a Redis writer changes what rqp does
                  or says. ``issue`` names the item of issue #22 that closes it.
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
    #: for UNPROTECTED rows: the item of issue #22 that closes it
    issue: str = ""

    def matches_key(self, key: str) -> bool:
        return re.fullmatch(self.key_re, key) is not None

    def matches_field(self, field: str) -> bool:
        return re.fullmatch(self.field_re, field) is not None


#: an UNPROTECTED row none of issue #22's items 1-5 closes (item 6 names it; someone must decide)
_NOT_COVERED = "6, not covered by items 1-5"


def _w(name: str) -> str:
    return rf"rqp:w:{_W}:{name}"


_SCHED = "scheduler"
_PROC = "processor"
_CLI = "rqp CLI"
_CONSOLE = "console"

ROWS: tuple[Row, ...] = (
    # ------------------------------------------------------------------ rqp:w:<W>:meta
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "state", "state", f"{_SCHED}, control.lua ({_CLI}, {_CONSOLE} actions)",
        f"{_SCHED}, {_CLI} status/list/results, {_CONSOLE}, serving scheduler (resume)",
        "whether a workload is run, paused, cancelled or resumed; what status and list report",
        "UNPROTECTED", "1, 3, 4"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "control", "control", f"control.lua ({_CLI}, {_CONSOLE} actions)",
        _SCHED, "the scheduler pauses, resumes or cancels the workload", "UNPROTECTED", "1"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "priority", "priority", f"{_CLI} priority, {_CONSOLE}",
        f"{_CLI} status, {_CONSOLE}", "shown as the workload's priority", "UNPROTECTED", "1"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "head", "head", _SCHED, _SCHED,
        "what is enqueued, when the data is exhausted, the round; the summary's total", "sealed"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "pin", "pin", _SCHED, _SCHED,
        "a workload replaced while unfinished is refused", "sealed"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "error_sealed", "error_sealed", _SCHED, f"{_CLI} status (with the KEK)",
        "the full error of a failed workload", "sealed"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "enqueued, chunks, total",
        "enqueued|chunks|total", _SCHED, f"{_CLI} status/list, {_CONSOLE}, rqp-scheduler run's exit line",
        "progress shown as fact (the sealed head governs what is done)", "UNPROTECTED", "3"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "started_at, finished_at", "started_at|finished_at", _SCHED,
        f"{_CLI} status, {_CONSOLE}, summary's elapsed time", "times shown and sealed into the summary", "UNPROTECTED",
        "3"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "error, processor_error", "error|processor_error", f"{_SCHED}, {_PROC}",
        f"{_CLI} status, {_CONSOLE}", "the reason shown for a failed or stuck workload", "UNPROTECTED", "3"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "reclaimed", "reclaimed", _SCHED,
        f"{_CONSOLE}, the summary's reclaimed_chunks", "a count shown and sealed into the summary", "UNPROTECTED", "3"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "results_sha256", "results_sha256", _SCHED, f"{_CLI} status",
        "shown; rqp results checks the sealed summary's digest, not this", "derived"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "format, signer, scheduler, max_attempts",
        "format|signer|scheduler|max_attempts", _SCHED, f"{_CLI} status, {_CONSOLE}",
        "shown only; the signed manifest and the sealed specs are what roles act on", "UNPROTECTED", "3"),
    Row("rqp:w:<W>:meta", _w("meta"), "hash", "retry_seq", "retry_seq", _SCHED, _SCHED,
        "names the next retry chunk; its sealed spec and START/COMMIT decide what it runs", "derived"),
    # ------------------------------------------------------------------ records in flight
    Row("rqp:w:<W>:c:<chunk>", _w(r"c:[A-Za-z0-9]+"), "string", "", "", _SCHED, f"{_PROC} (start), {_SCHED} (reclaim)",
        "the records a worker runs; a value that is not packed stops the scheduler (struct.error)",
        "UNPROTECTED", "7"),
    Row("rqp:w:<W>:rec", _w("rec"), "hash", "<record id>", r"\d+", f"{_PROC} (commit), {_SCHED}",
        f"{_PROC}, {_CLI} retry", "the records of retry chunks", "sealed"),
    Row("rqp:w:<W>:st", _w("st"), "hash", "<record id>", r"\d+", f"{_PROC}, {_SCHED}",
        f"{_CLI} status --record, results --failed, {_CONSOLE}, consolidation", "a record's status", "sealed"),
    Row("rqp:w:<W>:notes", _w("notes"), "hash", "<chunk>|<first>|<last>", r"[A-Za-z0-9]+\|\d+\|\d+", _PROC,
        f"consolidation, {_CLI} status --record", "which records a committed chunk did", "sealed"),
    Row("rqp:w:<W>:done", _w("done"), "bitmap", "", "", _PROC, f"{_PROC} (start), status --record",
        "refuses a replayed job; checked against the sealed notes at consolidation", "derived"),
    Row("rqp:w:<W>:failed", _w("failed"), "bitmap", "", "", f"{_PROC}, {_SCHED}",
        f"{_CLI} retry --failed, {_PROC} (start), consolidation",
        "which records rqp retry --failed runs again", "UNPROTECTED", "3"),
    Row("rqp:w:<W>:pending", _w("pending"), "zset", "", "", f"{_SCHED}, {_PROC}", f"{_SCHED}, {_PROC}",
        "leases; START/COMMIT accept only a job in it with its sealed spec (a member that is not a job id kills "
        "the scheduler today: #22 item 7)", "derived"),
    Row("rqp:w:<W>:spec", _w("spec"), "hash", "<job id>", _ANY, _SCHED, f"{_PROC}, {_SCHED} (reclaim)",
        "what a job runs", "sealed"),
    Row("rqp:w:<W>:parts", _w("parts"), "hash", "<chunk>", r"[A-Za-z0-9]+", _PROC, "consolidation",
        "which result part a chunk committed; every result in it is checked", "derived"),
    Row("rqp:w:<W>:retry", _w("retry"), "zset", "", "", f"{_PROC}, {_SCHED}", _SCHED,
        "retries due; only those a sealed commit asked for run", "derived"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "processing", "processing", f"{_PROC}, {_SCHED}",
        f"{_CLI} status, {_CONSOLE}, metrics", "records in flight shown", "UNPROTECTED", "3"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "done, failed", "done|failed", f"{_PROC}, {_SCHED}",
        f"rqp-scheduler run's exit code, {_CLI} status/list (and exit code), {_CONSOLE}, metrics",
        "the counts reported and the success exit code", "UNPROTECTED", "3"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "j:<job id>", r"j:.+", _PROC, f"{_PROC}, {_SCHED}",
        "the size a job added to processing", "UNPROTECTED", "3"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "s:<job id>", r"s:.+", _PROC, f"{_CLI} status --record",
        "when and where a record started", "sealed"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "e:<job id>", r"e:.+", _PROC, _SCHED,
        "the error given to the records of a chunk given up", "UNPROTECTED", "3"),
    Row("rqp:w:<W>:n", _w("n"), "hash", "r:<job id>", r"r:.+", _PROC, _SCHED,
        "a chunk handed back untouched is re-queued without counting an attempt", "derived"),
    Row("rqp:w:<W>:perf", _w("perf"), "hash", "records, seconds, last, first", "records|seconds|last|first", _PROC,
        f"{_SCHED} (adaptive chunk size), {_CLI} status rate/ETA, summary's throughput",
        "chunk sizes and the rate shown (a value that is not UTF-8 kills the scheduler, rqp status and list today)",
        "UNPROTECTED", "3, 7"),
    Row("rqp:w:<W>:lock", _w("lock"), "string", "", "", _SCHED, _SCHED,
        "which scheduler supervises the workload (a holder is only waited for)", "derived"),
    Row("rqp:w:<W>:blind", _w("blind"), "hash", "<host:pid>", _ANY, _PROC, f"{_CLI} status, {_CONSOLE}",
        "why a processor cannot open the workload, shown", "UNPROTECTED", "3"),
    # ------------------------------------------------------------------ shared by every workload
    Row("rqp:workloads", r"rqp:workloads", "zset", "", "", _SCHED, f"{_CLI} list, {_CONSOLE}, serving scheduler",
        "which workloads are listed and resumed (each one's own state is then opened)", "derived"),
    Row("rqp:submissions", r"rqp:submissions", "list", "", "", f"{_CLI} submit/pack --submit, control.lua",
        "serving scheduler", "which workloads a serving scheduler starts: a finished one is run again",
        "UNPROTECTED", "4"),
    Row("rqp:priorities", r"rqp:priorities", "hash", "<W>", _W, f"{_CLI} priority, {_CONSOLE}", _SCHED,
        "which RQ queue a workload's chunks go to", "UNPROTECTED", "1"),
    Row("rqp:audit", r"rqp:audit", "list", "", "", f"control.lua, {_CLI} retry/priority/delete, {_CONSOLE}",
        f"{_CLI} audit, {_CLI} results/status of a deleted workload, {_CONSOLE}",
        "who did what, printed as fact", "UNPROTECTED", "2"),
    Row("rqp:rejected", r"rqp:rejected", "list", "", "", f"{_PROC}, {_SCHED}", f"{_CLI} rejected, {_CONSOLE}",
        "the refused jobs shown (drives no decision; not labelled unverified)", "UNPROTECTED", _NOT_COVERED),
    Row("rqp:outbox", r"rqp:outbox", "hash", "<message id>", _ANY, f"{_PROC}, {_SCHED}", _SCHED,
        "status and event messages published; the payload is sealed to its queue, kind and id", "sealed"),
    Row("rqp:outbox:t", r"rqp:outbox:t", "zset", "", "", f"{_PROC}, {_SCHED}", _SCHED,
        "when an outbox entry is old enough to publish", "derived"),
    Row("rqp:held:<host:pid>", r"rqp:held:.+", "string", "", "", f"{_PROC} (start)", f"{_PROC} supervisor",
        "ends the lease of a dead worker's chunk at once (the chunk re-runs under START/COMMIT)", "derived"),
    Row("rqp:fleet", r"rqp:fleet", "zset", "", "", _PROC, f"{_CONSOLE} fleet, metrics",
        "which processors are listed as alive", "UNPROTECTED", "5"),
    Row("rqp:fleet:<host:pid>", r"rqp:fleet:.+", "hash", "host, pid, workers, protections, started_at, seen_at",
        "host|pid|workers|protections|started_at|seen_at", _PROC, f"{_CONSOLE} fleet, metrics",
        "a processor's host, workers and sandbox protections, shown as real", "UNPROTECTED", "5"),
    Row("rqp:mq:<queue> (status, events)", r"rqp:mq:(?!rqp-metrics$)[A-Za-z0-9_-]+", "stream", "b", "b",
        f"{_SCHED}, {_PROC} (outbox)", f"{_CLI} messages, consumers",
        "status and event messages; the payload is sealed to its queue, kind and id", "sealed"),
    Row("rqp:mq:rqp-metrics", r"rqp:mq:rqp-metrics", "stream", "b", "b", "rqp-metrics-logger", f"{_CLI} metrics",
        "host metrics samples, shown", "UNPROTECTED", _NOT_COVERED),
    # ------------------------------------------------------------------ RQ's own keys
    Row("rq:job:<job id>", r"rq:job:.+", "hash", "data", "data", f"{_SCHED} (RQ enqueue)", f"{_PROC} (RQ worker)",
        "which job a worker runs; its sealed spec must be the one in pending/spec (START)", "derived"),
    Row("rq:job:<job id>", r"rq:job:.+", "hash", "* (RQ's bookkeeping)", r"(?!data$).+", "RQ", f"RQ, {_SCHED}",
        "a job RQ lost or failed is reclaimed and re-run; START/COMMIT arbitrate", "derived"),
    Row("rq:worker:<name>", r"rq:worker:.+", "hash", "* (RQ's worker registry)", _ANY, f"RQ ({_PROC} workers)",
        f"{_CONSOLE} fleet", "which RQ workers the console lists, on which host", "UNPROTECTED", "5"),
    Row("rq:* (queues, registries, results)", r"rq:(?!job:|worker:).+", "any", "*", _ANY, "RQ",
        f"RQ, {_SCHED}", "delivery of jobs only: what runs and counts is decided by START/COMMIT", "derived"),
)  # fmt: skip


def find(key: str, field: str | None = None) -> Row | None:
    """The row naming ``key`` (and ``field``, for a hash field), or None when none does."""
    for row in ROWS:
        if not row.matches_key(key):
            continue
        if field is None or row.matches_field(field):
            return row
    return None


_HEADER = ("Key", "Type", "Field", "Written by", "Read by", "Drives", "Protection")


def _cell(s: str) -> str:
    return s.replace("|", "\\|")


def render_markdown() -> str:
    """SECURITY.md's trust table, from ``ROWS``."""
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "|".join("---" for _ in _HEADER) + "|"]
    for row in ROWS:
        protection = f"**UNPROTECTED** (#22 item {row.issue})" if row.protection == "UNPROTECTED" else row.protection
        cells = (f"`{row.key}`", row.type, f"`{row.field}`" if row.field else "", row.writers, row.readers, row.drives)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + f" | {protection} |")
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
