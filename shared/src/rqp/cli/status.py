"""``rqp status``: a workload's progress (counts by state, throughput, ETA), live with
``--watch``, with hints for what the counts alone do not say, or one record's status; its exit code
tells a script where the workload stands."""

from __future__ import annotations

import argparse
import base64
import json
import sys
import textwrap
import time
from dataclasses import asdict

import redis

from ..backends import Backends
from ..errors import RqpError, WorkloadError
from ..ledger import Ledger, Refusal
from ..records import JSONL_PROBE
from ..status import REFUSED, Progress, StatusRecord, read_progress, record_status, refusal_shown
from ..workload import blob_name, unreadable_manifest
from .context import backends, deleted, open_workload, verify_counts
from .formatting import FINISHED_STATES, Redraw, clip, format_status, terminal_width, when
from .record_keys import record_number

__all__ = ["cmd_status", "refusal_lines", "register", "shown_refusal", "unseal_error"]

#: ``rqp status`` exit codes a script can act on (README, "Exit codes")
STATUS_DONE, STATUS_DONE_WITH_FAILURES, STATUS_UNFINISHED, STATUS_FAILED = 0, 1, 3, 4


def _status_exit(p: Progress) -> int:
    """0 done with every record done; 1 finished with failed (or, cancelled, never run) records;
    3 not finished (running, paused, cancelling, consolidating); 4 failed as a whole, or ended with
    counts no sealed summary vouches for (never a success exit on Redis's word alone)."""
    if p.state == "failed" or p.verified is False:
        return STATUS_FAILED
    if p.state == "done":
        return STATUS_DONE_WITH_FAILURES if p.failed else STATUS_DONE
    if p.state == "cancelled":
        return STATUS_DONE_WITH_FAILURES
    return STATUS_UNFINISHED


def _packed(b: Backends, workload_id: str) -> tuple[bool, str]:
    """Whether ``workload_id`` is packed in the blob store, and where that store is."""
    try:
        store = b.blobs
        return store.exists(blob_name(workload_id, "manifest.json")), store.location
    except (RqpError, ValueError):
        return False, b.settings.blob_url


def _unknown_workload(b: Backends, workload_id: str, packed: tuple[bool, str]) -> WorkloadError:
    """Redis does not know ``workload_id``: packed but not scheduled yet, not packed at all, or deleted."""
    found, where = packed
    gone = None if found else deleted(b, workload_id)
    if gone:
        return WorkloadError(gone)
    if found:
        return WorkloadError(
            f"workload {workload_id} is packed (in {where}) but not scheduled yet; run 'rqp-scheduler run {workload_id}' "
            f"or 'rqp submit {workload_id}' for a serving scheduler"
        )
    return WorkloadError(
        f"workload {workload_id} is not known to Redis at {b.settings.redis_url_safe} nor packed in {where}; "
        f"check the id ('rqp list' shows the workloads) and RQP_REDIS_URL / RQP_BLOB_URL"
    )


def refusal_lines(refusal: Refusal, width: int) -> list[str]:
    """A refused workload for a person, wrapped to ``width``: the reason whole (it names the
    fix), who refused it and when, and that Redis's word for it is unverified."""
    wid = refusal.workload
    lines = textwrap.wrap(
        f"{wid}  [{REFUSED}]  the scheduler would not run it: {refusal.reason}", width, subsequent_indent="  "
    )
    lines += textwrap.wrap(
        f"refused by {refusal.by} at {when(refusal.at, short=True)} (as Redis holds it: unverified)",
        width, initial_indent="  ", subsequent_indent="  ",
    )  # fmt: skip
    lines += textwrap.wrap(
        f"fix what it says (re-pack with 'rqp pack --replace' if it must be signed again), then 'rqp submit {wid}'",
        width, initial_indent="  ", subsequent_indent="  ",
    )  # fmt: skip
    return lines


def shown_refusal(b: Backends, workload_id: str) -> Refusal | None:
    """``rqp.status.refusal_shown`` of a workload Redis holds no state of; None when the blob
    store cannot be opened here (a refusal is compared with the manifest it refused)."""
    try:
        store = b.blobs
    except (RqpError, ValueError):
        return None
    return refusal_shown(b.redis, store, workload_id)


def _refusal_json(refusal: Refusal) -> str:
    return json.dumps(
        {"workload": refusal.workload, "state": REFUSED, "reason": refusal.reason, "code": refusal.code,
         "at": refusal.at, "by": refusal.by, "verified": False},
    )  # fmt: skip


def _why_waiting(workload_id: str) -> str:
    return f"(rqp-scheduler run {workload_id}, or rqp submit {workload_id} for a serving scheduler)"


def _processors(b: Backends) -> int | None:
    """Worker processes registered on the RQ queue the workloads use; None when this Redis user
    may not ask."""
    from rq import Queue, Worker  # noqa: PLC0415 - RQ's import (~15 ms) only for 'rqp status', not 'rqp submit'

    try:
        r = b.redis
        return int(Worker.count(connection=r, queue=Queue(b.settings.rq_queue, connection=r)))
    except redis.ResponseError:
        return None


def _status_notes(b: Backends, p: Progress, workers: int | None) -> list[str]:
    """Hints for what the counts alone do not say: nothing is processing the queue, or a JSON
    Lines workload whose records all fail (most likely data in another format)."""
    settings, r = b.settings, b.redis
    notes = []
    if p.verified is False and p.round_note:
        notes.append(f"unverified: these are its sealed counts, but {p.round_note}")
    elif p.verified is False:
        why = unreadable_manifest(b.blobs, p.workload) or (
            "its sealed summary is missing or does not open"
            if settings.kek_file or settings.key_vault_key_id
            else "no KEK here to open its sealed summary (set RQP_KEK_FILE)"
        )
        notes.append(f"unverified: these counts are Redis's own; {why}")
    waiting = p.reading or p.queued or p.processing or p.retrying
    if workers == 0 and p.state in ("running", "cancelling") and waiting:
        notes.append(
            f"hint: no processor is running for queue {settings.rq_queue}: start 'rqp-processor' with this "
            f"RQP_REDIS_URL (and RQP_RQ_QUEUE={settings.rq_queue})"
        )
    if p.state not in FINISHED_STATES:
        for worker, seen in sorted(Ledger(r, p.workload).blind().items()):
            notes.append(
                f"hint: processor {worker} cannot open this workload ({seen.get('reason', '?')}); it hands its "
                f"chunks back to the others: give it the scheduler's RQP_BLOB_URL and keys, then restart it"
            )
    probe = JSONL_PROBE if p.total is None else min(JSONL_PROBE, p.total)
    if p.format == "jsonl" and p.done == 0 and p.failed and p.failed >= probe:
        reason = _first_failure(b, p.workload)
        if reason is None:
            notes.append(
                f"hint: none of the first {p.failed:,} records succeeded; if they fail as 'not valid JSON', the data is "
                f"not JSON Lines: re-pack it with --format csv or --format script ('rqp status {p.workload} --record 0' "
                f"shows the reason)"
            )
        elif "not valid JSON" in reason:
            notes.append(
                f"hint: none of the first {p.failed:,} records is valid JSON: if the data is not JSON Lines, re-pack it "
                f"with --format csv (or --format script and a parse() in the script)"
            )
    return notes


def _first_failure(b: Backends, workload_id: str) -> str | None:
    """Record 0's error when this user holds the KEK and it failed; None when that cannot be told."""
    if not (b.settings.kek_file or b.settings.key_vault_key_id):
        return None
    try:
        st = record_status(b.redis, open_workload(b, workload_id), 0)
    except (RqpError, ValueError):
        return None
    return (st.error or "") if st.state == "failed" else None


def _record_text(st: StatusRecord) -> list[str]:
    """A record's status for a person: times in ISO 8601, local time."""
    lines = [f"record {st.id}: {st.state} (attempt {st.attempts})", f"  {'workload':<9} {st.workload}"]
    if st.key is not None:
        lines.append(f"  {'key':<9} {st.key}")
    took = (
        f"  ({st.finished_at - st.started_at:.3f} s after it started)"
        if st.finished_at is not None and st.started_at is not None
        else ""
    )
    for label, value in (
        ("queued", when(st.queued_at)),
        ("started", when(st.started_at)),
        ("finished", when(st.finished_at) + took),
        ("worker", st.worker or "-"),
        ("job", st.job or "-"),
    ):
        lines.append(f"  {label:<9} {value}")
    if st.reruns:  # its chunk lost its worker or VM: re-run, but no attempt of the record
        lines.append(f"  {'re-runs':<9} {st.reruns} after a lost worker (not attempts)")
    if st.error:
        lines.append(f"  {'error':<9} {st.error}")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    b = backends(args)
    r = b.redis
    if args.record is not None:
        workload = open_workload(b, args.workload)
        st = record_status(r, workload, record_number(b, workload, args.record))
        if args.json or not sys.stdout.isatty():
            print(json.dumps(asdict(st), indent=1))  # numbers stay numbers for scripts
        else:
            print("\n".join(_record_text(st)))
        return 0
    redraw = Redraw(sys.stdout) if args.watch and not args.json and sys.stdout.isatty() else None
    said_waiting = False
    printed = ""
    try:
        while True:
            p = read_progress(r, args.workload)
            refusal = shown_refusal(b, args.workload) if p is None else None
            if refusal is not None:  # refused by the scheduler: that is where it stands (exit 4)
                if args.json:
                    print(_refusal_json(refusal), flush=True)
                elif redraw is not None:
                    redraw.show(refusal_lines(refusal, terminal_width()))
                else:
                    print("\n".join(refusal_lines(refusal, terminal_width())), flush=True)
                return STATUS_FAILED
            if p is None:
                packed = _packed(b, args.workload)
                if not (args.watch and packed[0]):
                    raise _unknown_workload(b, args.workload, packed)
                # packed, and --watch: wait for a scheduler to start it
                waiting = [
                    f"{args.workload}  [packed]  waiting for a scheduler to start it",
                    _why_waiting(args.workload),
                ]
                if redraw is not None:
                    redraw.show([clip(line, terminal_width()) for line in waiting])
                elif not (args.json or said_waiting):
                    print(" ".join(waiting), flush=True)
                said_waiting = True
                time.sleep(args.interval)
                continue
            if p.error:
                p.error = unseal_error(b, args.workload) or p.error
            finished = p.state in FINISHED_STATES
            if finished:
                p = verify_counts(b, p)
            workers = None if finished else _processors(b)
            notes = _status_notes(b, p, workers)
            if args.json:
                print(json.dumps({**p.as_dict(), "workers": workers, "hints": notes}), flush=True)
            elif redraw is not None:
                redraw.show(format_status(p, terminal_width(), notes))
            else:
                text = "\n".join(format_status(p, terminal_width(), notes))
                if text != printed:  # into a pipe or a log: a refresh that says nothing new is left out
                    print(text, flush=True)
                    printed = text
            if not args.watch or finished:
                break
            time.sleep(args.interval)
    finally:
        if redraw is not None:
            redraw.end()
    return _status_exit(p)


def unseal_error(b: Backends, workload_id: str) -> str | None:
    """The full workload error, when this user holds the KEK; else None (the generic text shows)."""
    sealed = Ledger(b.redis, workload_id).sealed_error()
    if not sealed or not (b.settings.kek_file or b.settings.key_vault_key_id):
        return None
    try:
        workload = open_workload(b, workload_id)
        return workload.open_sealed("error", "", base64.b64decode(sealed)).decode()
    except (RqpError, ValueError):
        return None


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``status`` on ``rqp``'s sub-commands."""
    p = sub.add_parser(
        "status",
        parents=[common],
        help="counts by state, throughput and ETA; exit 0 done, 1 done with failures or cancelled, "
        "3 not finished, 4 failed or refused, 7 unknown",
    )
    p.add_argument("workload")
    p.add_argument("--watch", action="store_true", help="live progress until the workload ends")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--record",
        metavar="N|KEY",
        help="one record's decrypted status record: its 0-based number, or its own key when the workload was "
        "packed with --id-field (text on a terminal, JSON with --json or in a pipe)",
    )
    p.set_defaults(func=cmd_status)
