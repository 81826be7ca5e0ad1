"""``rqp``: the user's command line.

Every failure prints one line, ``rqp: error: <what is wrong and how to fix it>``, and exits with
the error's ``exit_code`` (see ``rqp.errors``).
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import math
import os
import shutil
import sys
import textwrap
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from rq import Queue, Worker

from . import __version__
from .config import Settings
from .connect import (
    connect_redis,
    open_blob_store,
    open_key_provider,
    open_message_queue,
    open_signing_key,
    open_trust_store,
)
from .crypto import aad, decrypt_stream
from .errors import BlobNotFoundError, IntegrityError, RedisUnavailableError, RqpError, WorkloadError
from .jsonsafe import result_line
from .keys import generate_kek
from .ledger import SUBMISSIONS, Ledger, Priority, submit, workloads
from .messages import open_envelope, peek_workload
from .records import JSONL_PROBE
from .signing import generate_signing_key
from .status import Progress, StatusRecord, read_progress, record_status
from .storage import Message, RedisMessageQueue
from .summary import read_summary
from .workload import Workload, blob_name, check_workload_id, new_workload_id, pack

__all__ = ["format_progress", "format_status", "main", "read_results", "read_summary"]

BAR_WIDTH = 30


# ------------------------------------------------------------------------------- helpers
def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return Settings.load(
        getattr(args, "config", None),
        redis_url=getattr(args, "redis_url", None),
        blob_url=getattr(args, "blob_url", None),
        kek_file=getattr(args, "kek", None),
        kek_public_file=getattr(args, "public_key", None),
        signing_key_file=getattr(args, "signing_key", None),
        trusted_signers_file=getattr(args, "trusted_signers", None),
        **overrides,
    )


def _open_workload(settings: Settings, workload_id: str, store: Any = None) -> Workload:
    """Open a workload the way the roles do: trusted signature first, then the key."""
    store = store if store is not None else open_blob_store(settings.blob_url)
    check_workload_id(workload_id)  # before any lookup below names a blob after it
    try:
        return Workload.open(store, open_key_provider(settings), workload_id, open_trust_store(settings))
    except WorkloadError:
        # only when it cannot be opened: was it deleted? (no extra round trip on the way that works)
        deleted = None if store.exists(blob_name(workload_id, "manifest.json")) else _deleted(settings, workload_id)
        if deleted:
            raise WorkloadError(deleted) from None
        raise


def _deleted(settings: Settings, workload_id: str) -> str | None:
    """ "Workload W was deleted by ... at ..." when the audit log says so (None when it does not,
    or Redis cannot tell): better than "not found, pack it" for a workload someone removed."""
    from .control import audit as audit_log  # noqa: PLC0415
    from .control_cli import _when as _audit_time  # noqa: PLC0415 - as 'rqp audit' shows it

    try:
        entries = audit_log(connect_redis(settings), DELETED_LOOKBACK)
    except (RqpError, redis.RedisError):
        return None
    for e in entries:
        if e.get("workload") == workload_id and str(e.get("what", "")).startswith("delete"):
            how = " and its data key destroyed (--shred)" if "shred" in str(e.get("what")) else ""
            return (
                f"workload {workload_id} was deleted{how} by {e.get('who', '?')} at {_audit_time(float(e.get('at') or 0))} "
                f"('rqp audit'); its results and state are gone"
            )
    return None


#: how many of the newest audit entries are searched for a deletion
DELETED_LOOKBACK = 1000


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _fmt_age(seconds: float) -> str:
    """How long ago, in the largest unit or two that fit: 42s, 5m, 3h07m, 2d04h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _when(at: float | None) -> str:
    """An epoch time as ISO 8601 in local time, to the millisecond; '-' for none."""
    if at is None:
        return "-"
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="milliseconds")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _flow(pieces: list[str], width: int, sep: str = "  ") -> list[str]:
    """``pieces`` joined by ``sep`` into as few lines of at most ``width`` columns as they fit (a
    piece is never split; one longer than a line is clipped)."""
    lines: list[str] = []
    line = ""
    for piece in pieces:
        if line and len(line) + len(sep) + len(piece) <= width:
            line += sep + piece
            continue
        if line:
            lines.append(line)
        line = _clip(piece, width)
    if line:
        lines.append(line)
    return lines


def _percent(fraction: float) -> str:
    """One decimal, rounded down: 2,999 of 3,000 is 99.9%, never 100.0% before the end."""
    return f"{math.floor(fraction * 1000) / 10:.1f}%"


def _bar(fraction: float, width: int) -> str:
    filled = int(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _progress_pieces(p: Progress) -> tuple[str, list[str], list[str]]:
    """What ``rqp status`` shows: the headline's progress (a percentage of the total, or, while the
    data is still being read and the total is unknown, how many records were read so far), the
    counts by state, and rate and times."""
    finished = p.state in FINISHED_STATES
    if p.reading:
        headline = f"{p.enqueued:,} records read" if finished else f"reading data: {p.enqueued:,} records so far"
        counts = [f"{p.done:,} done"]
    else:
        headline = _percent(p.fraction or 0.0)
        counts = [f"{p.done:,} of {p.total:,} done"]
    counts.append(f"{p.failed:,} failed")
    if p.state == "cancelled" and p.total is not None and p.total > p.done + p.failed:
        counts.append(f"{p.total - p.done - p.failed:,} never ran (cancelled)")
    if not finished:
        counts += [
            f"{p.retrying:,} retrying",
            f"{p.queued:,} queued",
            f"{p.processing:,} in chunks being processed",
        ]
    timing = [f"{p.rate:,.0f} rec/s"]
    if finished:
        timing.append(f"took {_fmt_duration(p.elapsed)}")
    else:
        eta = "ETA -- (paused: 'rqp resume' to go on)" if p.state == "paused" else f"ETA {_fmt_duration(p.eta)}"
        timing += [f"elapsed {_fmt_duration(p.elapsed)}", eta]
    return headline, counts, timing


def format_progress(p: Progress, width: int | None = None) -> str:
    """One line: workload, state, bar and percentage (or records read so far), counts, rate, ETA.
    With ``width``, the bar is shortened and the least telling pieces dropped until it fits."""
    headline, counts, timing = _progress_pieces(p)
    head = [p.workload, f"[{p.state}]"]
    bar = _bar(p.fraction or 0.0, BAR_WIDTH) if not p.reading else ""
    # what goes first when it does not fit: elapsed, the waiting counts, the rate, the failures
    droppable = [*timing[1:-1], *counts[2:][::-1], timing[0], *counts[1:2]]
    while True:
        shown = [*counts, *timing]
        line = "  ".join(x for x in [*head, bar, headline, *shown] if x)
        if width is None or len(line) <= width:
            return line
        if bar and len(bar) > 12:
            bar = _bar(p.fraction or 0.0, max(10, len(bar) - 2 - (len(line) - width)))
            continue
        if bar:
            bar = ""
            continue
        drop = next((x for x in droppable if x in counts or x in timing), None)
        if drop is None:
            return _clip(line, width)
        droppable.remove(drop)
        counts = [x for x in counts if x != drop]
        timing = [x for x in timing if x != drop]


def format_status(p: Progress, width: int, notes: list[str] | None = None) -> list[str]:
    """``rqp status``: a few lines, none longer than ``width`` columns (so a terminal never wraps
    them and ``--watch`` can redraw them in place)::

        sales-2026  [running]  42.1%  [##############..................]
        1,234 of 3,000 done  12 failed  3 retrying  1,000 queued  256 in chunks being processed
        1,523 rec/s  elapsed 0:02  ETA 0:01
        hint: ...
    """
    headline, counts, timing = _progress_pieces(p)
    first = f"{p.workload}  [{p.state}]  {headline}"
    room = width - len(first) - 2
    if not p.reading and room >= 12:
        first += "  " + _bar(p.fraction or 0.0, min(40, room) - 2)
    lines = [_clip(first, width), *_flow(counts, width), *_flow(timing, width)]
    if p.error:
        lines += textwrap.wrap(f"error: {p.error}", width, subsequent_indent="  ") or [""]
    for note in notes or []:
        lines += textwrap.wrap(note, width, subsequent_indent="  ")
    return lines


class _Redraw:
    """Redraws a block of lines in place on a terminal: up to the block's first line, each line
    written over and cleared to its end, anything below the new block cleared."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.height = 0

    def show(self, lines: list[str]) -> None:
        up = f"\x1b[{self.height - 1}A" if self.height > 1 else ""
        self.out.write(up + "\r" + "\n".join(line + "\x1b[K" for line in lines) + "\x1b[J")
        self.out.flush()
        self.height = len(lines)

    def end(self) -> None:
        if self.height:
            self.out.write("\n")
            self.out.flush()


def _width() -> int:
    """Columns for a block of text: the terminal's, less one (a line that reaches the last column
    makes some terminals wrap)."""
    return max(40, shutil.get_terminal_size((100, 24)).columns - 1)


def read_results(store: Any, workload: Workload) -> Iterator[bytes]:
    """Yield result lines (bytes, JSON) after checking the results blob against the summary."""
    info = read_summary(store, workload).results
    if store.size(info.blob) != info.size:
        raise IntegrityError(
            f"results of workload {workload.id} are {store.size(info.blob)} bytes but the summary says {info.size}: truncated or replaced"
        )
    rest = b""
    digest = hashlib.sha256()

    def hashed() -> Iterator[bytes]:
        for c in store.iter_chunks(info.blob):
            digest.update(c)
            yield c

    for piece in decrypt_stream(
        workload.key, hashed(), aad("results", workload.id), f"results of workload {workload.id}"
    ):
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest
    if digest.hexdigest() != info.sha256:
        raise IntegrityError(
            f"results of workload {workload.id} do not match the digest in its summary: replaced; re-run 'rqp-scheduler run {workload.id}'"
        )


# ------------------------------------------------------------------------------- commands
def cmd_keygen(args: argparse.Namespace) -> int:
    if args.signing:
        priv = Path(args.out or "keys/signer.pem")
        pub = Path(args.public_out) if args.public_out else priv.with_name(priv.name.removesuffix(".pem") + ".pub.pem")
        fp = generate_signing_key(priv, pub)
        print(
            f"submitter signing key {fp} (Ed25519)\n  private: {priv} (mode 0600; keep it with whoever packs: RQP_SIGNING_KEY_FILE or --signing-key)\n"
            f"  public:  {pub} (add it to the roles' RQP_TRUSTED_SIGNERS_FILE: cat {pub} >> trusted_signers.pem)"
        )
        return 0
    priv = Path(args.out or "keys/kek.pem")
    pub = Path(args.public_out) if args.public_out else priv.with_name(priv.name.removesuffix(".pem") + ".pub.pem")
    kid = generate_kek(priv, pub, bits=args.bits)
    print(
        f"key-encryption key {kid}\n  private: {priv} (mode 0600; mount it read-only into scheduler and processors)\n  public:  {pub} (enough to pack)"
    )
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = open_blob_store(settings.blob_url)
    keys = open_key_provider(settings, need_private=False)
    signer = open_signing_key(settings)
    wid = args.id or new_workload_id(Path(args.data).stem)
    total = os.path.getsize(args.data) if os.path.exists(args.data) else 0
    seen = 0
    last = 0.0
    show = sys.stderr.isatty() or args.progress

    def progress(n: int) -> None:
        nonlocal seen, last
        seen += n
        now = time.monotonic()
        if show and (now - last > 0.2 or seen >= total):
            last = now
            pct = 100.0 * seen / total if total else 100.0
            print(
                f"\rpacking {args.data}: {seen / 1e6:,.1f}/{total / 1e6:,.1f} MB ({pct:.0f}%)",
                end="",
                file=sys.stderr,
                flush=True,
            )

    m = pack(
        store,
        keys,
        wid,
        Path(args.data),
        Path(args.script),
        fmt=args.format,
        delimiter=args.delimiter,
        replace=args.replace,
        progress=progress,
        signer=signer,
        id_field=args.id_field,
    )
    if show:
        print(file=sys.stderr)
    if m.data.plain_size == 0:
        print(f"rqp: warning: {args.data} is empty: workload {wid} has no records to process", file=sys.stderr)
    if args.submit or args.priority:
        r = connect_redis(settings)
        if args.priority:
            _set_priority(r, wid, args.priority)
        if args.submit:
            submit(r, wid)
    print(wid)
    print(
        f"packed workload {wid}: data {m.data.plain_size:,} bytes -> {m.data.size:,} encrypted, script {m.script.plain_size:,} bytes, KEK {m.kek_id}, signed by {signer.fingerprint}, in {store.location}"
        + (" (submitted)" if args.submit else ""),
        file=sys.stderr,
    )
    return 0


def cmd_signer(args: argparse.Namespace) -> int:
    signer = open_signing_key(_settings(args))
    if args.pem:
        sys.stdout.write(f"# {signer.fingerprint} ({signer.alg})\n" + signer.public_pem().decode())
    else:
        print(f"{signer.fingerprint} {signer.alg}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = open_blob_store(settings.blob_url)
    if not store.exists(blob_name(args.workload, "manifest.json")):
        raise WorkloadError(f"workload {args.workload} not found in {store.location}; pack it first with 'rqp pack'")
    r = connect_redis(settings)
    if args.priority:
        _set_priority(r, args.workload, args.priority)
    submit(r, args.workload)
    print(f"submitted {args.workload}; a running 'rqp-scheduler serve' picks it up")
    return 0


#: ``--priority`` of pack and submit (``rqp.ledger.Priority``)
PRIORITY_CHOICES = tuple(p.value for p in Priority)
PRIORITY_HELP = "queue its chunks ahead of (high) or behind (low) normal workloads; 'rqp priority' changes it later"


def _set_priority(r: Any, workload_id: str, level: str) -> None:
    from .control import set_priority  # noqa: PLC0415
    from .control_cli import actor  # noqa: PLC0415

    set_priority(r, workload_id, level, actor())


#: states in which a workload will not change any more
FINISHED_STATES = ("done", "failed", "cancelled")
#: ``rqp status`` exit codes a script can act on (README, "Exit codes")
STATUS_DONE, STATUS_DONE_WITH_FAILURES, STATUS_UNFINISHED, STATUS_FAILED = 0, 1, 3, 4


def _status_exit(p: Progress) -> int:
    """0 done with every record done; 1 finished with failed (or, cancelled, never run) records;
    3 not finished (running, paused, cancelling, consolidating); 4 failed as a whole."""
    if p.state == "failed":
        return STATUS_FAILED
    if p.state == "done":
        return STATUS_DONE_WITH_FAILURES if p.failed else STATUS_DONE
    if p.state == "cancelled":
        return STATUS_DONE_WITH_FAILURES
    return STATUS_UNFINISHED


def _packed(settings: Settings, workload_id: str) -> tuple[bool, str]:
    """Whether ``workload_id`` is packed in the blob store, and where that store is."""
    try:
        store = open_blob_store(settings.blob_url)
        return store.exists(blob_name(workload_id, "manifest.json")), store.location
    except (RqpError, ValueError):
        return False, settings.blob_url


def _unknown_workload(settings: Settings, workload_id: str, packed: tuple[bool, str]) -> WorkloadError:
    """Redis does not know ``workload_id``: packed but not scheduled yet, not packed at all, or deleted."""
    found, where = packed
    deleted = None if found else _deleted(settings, workload_id)
    if deleted:
        return WorkloadError(deleted)
    if found:
        return WorkloadError(
            f"workload {workload_id} is packed (in {where}) but not scheduled yet; run 'rqp-scheduler run {workload_id}' "
            f"or 'rqp submit {workload_id}' for a serving scheduler"
        )
    return WorkloadError(
        f"workload {workload_id} is not known to Redis at {settings.redis_url_safe} nor packed in {where}; "
        f"check the id ('rqp list' shows the workloads) and RQP_REDIS_URL / RQP_BLOB_URL"
    )


def _why_waiting(workload_id: str) -> str:
    return f"(rqp-scheduler run {workload_id}, or rqp submit {workload_id} for a serving scheduler)"


def _processors(settings: Settings, r: Any) -> int | None:
    """Worker processes registered on the RQ queue the workloads use; None when this Redis user
    may not ask."""
    try:
        return int(Worker.count(connection=r, queue=Queue(settings.rq_queue, connection=r)))
    except redis.ResponseError:
        return None


def _status_notes(settings: Settings, r: Any, p: Progress, workers: int | None) -> list[str]:
    """Hints for what the counts alone do not say: nothing is processing the queue, or a JSON
    Lines workload whose records all fail (most likely data in another format)."""
    notes = []
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
        reason = _first_failure(settings, r, p.workload)
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


def _first_failure(settings: Settings, r: Any, workload_id: str) -> str | None:
    """Record 0's error when this user holds the KEK and it failed; None when that cannot be told."""
    if not (settings.kek_file or settings.key_vault_key_id):
        return None
    try:
        st = record_status(r, _open_workload(settings, workload_id), 0)
    except (RqpError, ValueError):
        return None
    return (st.error or "") if st.state == "failed" else None


def _record_text(st: StatusRecord) -> list[str]:
    """A record's status for a person: times in ISO 8601, local time."""
    lines = [f"record {st.id}: {st.state} (attempt {st.attempts})", f"  {'workload':<9} {st.workload}"]
    took = (
        f"  ({st.finished_at - st.started_at:.3f} s after it started)"
        if st.finished_at is not None and st.started_at is not None
        else ""
    )
    for label, value in (
        ("queued", _when(st.queued_at)),
        ("started", _when(st.started_at)),
        ("finished", _when(st.finished_at) + took),
        ("worker", st.worker or "-"),
        ("job", st.job or "-"),
    ):
        lines.append(f"  {label:<9} {value}")
    if st.error:
        lines.append(f"  {'error':<9} {st.error}")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    r = connect_redis(settings)
    if args.record is not None:
        if args.record < 0:
            raise WorkloadError(
                f"there is no record {args.record}: record ids are the records' 0-based numbers in the data (0, 1, 2, ...)"
            )
        st = record_status(r, _open_workload(settings, args.workload), args.record)
        if args.json or not sys.stdout.isatty():
            print(json.dumps(asdict(st), indent=1))  # numbers stay numbers for scripts
        else:
            print("\n".join(_record_text(st)))
        return 0
    redraw = _Redraw(sys.stdout) if args.watch and not args.json and sys.stdout.isatty() else None
    said_waiting = False
    printed = ""
    try:
        while True:
            p = read_progress(r, args.workload)
            if p is None:
                packed = _packed(settings, args.workload)
                if not (args.watch and packed[0]):
                    raise _unknown_workload(settings, args.workload, packed)
                # packed, and --watch: wait for a scheduler to start it
                waiting = [
                    f"{args.workload}  [packed]  waiting for a scheduler to start it",
                    _why_waiting(args.workload),
                ]
                if redraw is not None:
                    redraw.show([_clip(line, _width()) for line in waiting])
                elif not (args.json or said_waiting):
                    print(" ".join(waiting), flush=True)
                said_waiting = True
                time.sleep(args.interval)
                continue
            if p.error:
                p.error = _unseal_error(settings, r, args.workload) or p.error
            finished = p.state in FINISHED_STATES
            workers = None if finished else _processors(settings, r)
            notes = _status_notes(settings, r, p, workers)
            if args.json:
                print(json.dumps({**p.as_dict(), "workers": workers, "hints": notes}), flush=True)
            elif redraw is not None:
                redraw.show(format_status(p, _width(), notes))
            else:
                text = "\n".join(format_status(p, _width(), notes))
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


def _unseal_error(settings: Settings, r: Any, workload_id: str) -> str | None:
    """The full workload error, when this user holds the KEK; else None (the generic text shows)."""
    sealed = Ledger(r, workload_id).sealed_error()
    if not sealed or not (settings.kek_file or settings.key_vault_key_id):
        return None
    try:
        workload = _open_workload(settings, workload_id)
        return workload.open_sealed("error", "", base64.b64decode(sealed)).decode()
    except (RqpError, ValueError):
        return None


def _packed_workloads(settings: Settings, known: set[str]) -> list[tuple[str, float]]:
    """(id, packed at) of the workloads in the blob store that Redis does not know: packed, not
    scheduled. The manifests' creation times are read unauthenticated: they only order the list."""
    parts = urllib.parse.urlsplit(settings.blob_url)
    if parts.scheme in ("", "file"):
        root = parts.netloc + parts.path if parts.scheme else settings.blob_url
        if not os.path.isdir(root):
            return []  # no store here yet: nothing packed (and looking creates nothing)
    store = open_blob_store(settings.blob_url)
    found = []
    for name in store.list("workloads/"):
        wid, _, leaf = name.removeprefix("workloads/").partition("/")
        if leaf != "manifest.json" or wid in known:
            continue
        try:
            created = float(json.loads(store.get(name)).get("created", 0.0))
        except (RqpError, ValueError, TypeError, AttributeError):
            created = 0.0
        found.append((wid, created))
    return found


def cmd_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    r = connect_redis(settings)
    now = time.time()
    rows: list[tuple[float, list[str]]] = []
    started = workloads(r, newest_first=True)
    known = set(started)
    for wid in started[: args.limit]:  # older ones cannot be among the newest, packed or not
        p = read_progress(r, wid)
        if p is None:
            continue
        if not p.reading:
            progress = _percent(p.fraction or 0.0)
        else:
            progress = "-" if p.state in FINISHED_STATES else f"reading ({p.enqueued:,})"
        total = f"{p.total:,}" if p.total is not None else "?"
        at = p.started_at or 0.0
        rows.append((at, [wid, p.state, progress, f"{p.done:,}/{total}", f"{p.failed:,}", _fmt_age(now - at)]))
    try:
        submitted = {x.decode() if isinstance(x, bytes) else str(x) for x in r.lrange(SUBMISSIONS, 0, -1)}
    except redis.ResponseError:  # a Redis user that may not read the submissions
        submitted = set()
    try:
        packed = _packed_workloads(settings, known)
    except RqpError as exc:
        print(f"rqp: warning: packed workloads not listed: {exc}", file=sys.stderr)
        packed = []
    for wid, created in packed:
        state = "submitted" if wid in submitted else "packed"
        rows.append((created, [wid, state, "-", "-", "-", _fmt_age(now - created) if created else "?"]))
    if not rows:
        print(
            f"no workloads (in Redis at {settings.redis_url_safe}, nor packed in {settings.blob_url}); pack one with 'rqp pack DATA SCRIPT'"
        )
        return 0
    rows.sort(key=lambda row: row[0], reverse=True)
    more = len(rows) - args.limit + len(started[args.limit :])
    table = [["WORKLOAD", "STATE", "PROGRESS", "DONE", "FAILED", "AGE"], *(cells for _, cells in rows[: args.limit])]
    fit = _width() if sys.stdout.isatty() and not args.wide else None
    lines, clipped = _table(table, right={"DONE", "FAILED", "AGE"}, width=fit)
    print("\n".join(lines))
    if clipped:
        print("(ids shortened: --wide shows them whole)")
    if more > 0:
        print(f"({more:,} older not shown; --limit N shows more)")
    return 0


def _table(rows: list[list[str]], right: set[str], width: int | None) -> tuple[list[str], bool]:
    """``rows`` (the first is the header) as aligned columns, two spaces apart, numbers to the
    right. With ``width``, a table too wide loses its PROGRESS column (DONE says as much), then
    has its first column shortened in the middle (ids differ at their ends). Also: whether it was."""

    def render(rows: list[list[str]]) -> list[str]:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        header = rows[0]
        return [
            "  ".join(
                cell.rjust(w) if header[i] in right else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in rows
        ]

    lines = render(rows)
    if width is None or max(map(len, lines)) <= width:
        return lines, False
    if "PROGRESS" in rows[0]:
        at = rows[0].index("PROGRESS")
        rows = [row[:at] + row[at + 1 :] for row in rows]
        lines = render(rows)
        if max(map(len, lines)) <= width:
            return lines, False
    first = max(len(row[0]) for row in rows)
    room = max(12, width - (max(map(len, lines)) - first))  # what the other columns leave
    short = [[_middle(row[0], room), *row[1:]] for row in rows]
    return render(short), any(len(row[0]) > room for row in rows)


def _middle(text: str, width: int) -> str:
    """``text`` shortened to ``width`` by an ellipsis in its middle."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def _no_results(settings: Settings, workload_id: str, exc: BlobNotFoundError) -> RqpError:
    """Why a workload has no summary yet, from what Redis says of it (the blob store's own error
    when Redis cannot tell)."""
    try:
        r = connect_redis(settings)
        p = read_progress(r, workload_id)
    except RqpError:
        return exc
    if p is None:
        return WorkloadError(
            f"workload {workload_id} has no results: it is packed but was never scheduled; run "
            f"'rqp-scheduler run {workload_id}' (or 'rqp submit {workload_id}' for a serving scheduler)"
        )
    if p.state == "failed":
        error = _unseal_error(settings, r, workload_id) or p.error or "no reason recorded"
        return WorkloadError(f"workload {workload_id} failed as a whole and has no results: {error}")
    if p.state in FINISHED_STATES:
        return exc  # finished, yet no summary: the blob store's word (deleted, or another store)
    total = f"{p.total:,}" if p.total is not None else f"at least {p.enqueued:,}, the data still being read"
    return WorkloadError(
        f"workload {workload_id} is not finished yet ({p.state}: {p.done:,} done and {p.failed:,} failed of {total}); "
        f"watch it with 'rqp status {workload_id} --watch' and run 'rqp results {workload_id}' once it is done"
    )


def _failures_so_far(settings: Settings, workload: Workload) -> list[Any]:
    """A running workload's records failed for good until now, with their reasons (sealed status
    records, read in batches); says on stderr that the list is not final."""
    from .summary import Failure  # noqa: PLC0415

    r = connect_redis(settings)
    led = Ledger(r, workload.id)
    if not led.exists():
        raise WorkloadError(
            f"workload {workload.id} is not known to Redis; schedule it first (rqp-scheduler run {workload.id})"
        )
    ids = led.failed_ids()
    out = []
    for i in range(0, len(ids), 1000):
        batch = ids[i : i + 1000]
        for rid, sealed in zip(batch, led.statuses(batch), strict=True):
            if sealed is None:
                out.append(Failure(rid, "status record missing", None))
                continue
            st = StatusRecord.open(workload, rid, sealed)
            out.append(Failure(rid, st.error, st.attempts, st.key))
    print(f"workload {workload.id} is {led.state()}: {len(out):,} records failed so far (not final)", file=sys.stderr)
    return out


def cmd_results(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = open_blob_store(settings.blob_url)
    workload = _open_workload(settings, args.workload, store)
    try:
        failures = read_summary(store, workload).failures
    except BlobNotFoundError as exc:
        if not args.failed:
            raise _no_results(settings, args.workload, exc) from None
        failures = _failures_so_far(settings, workload)  # still running: what has failed until now
    keyed = workload.manifest.id_field is not None
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115 - closed below, unless stdout
    try:
        if args.format == "csv":
            text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
            writer = csv.writer(text)
            if args.failed:
                writer.writerow(["id", *(["key"] if keyed else []), "attempts", "error"])
                for f in failures:
                    key = [f.key or ""] if keyed else []
                    writer.writerow([f.id, *key, "" if f.attempts is None else f.attempts, f.error or ""])
            else:
                writer.writerow(["id", *(["key"] if keyed else []), "result"])
                for line in read_results(store, workload):
                    doc = json.loads(result_line(line))  # strict: what a script host sent may not be JSON
                    res = doc["result"] if "result" in doc else {"error": doc["error"]}
                    key = [doc.get("key", "")] if keyed else []
                    writer.writerow(
                        [doc["id"], *key, res if isinstance(res, str) else json.dumps(res, allow_nan=False)]
                    )
            text.detach()
        elif args.failed:
            for f in failures:
                doc = asdict(f)
                if doc["key"] is None:
                    del doc["key"]
                out.write(json.dumps(doc, allow_nan=False).encode() + b"\n")
        else:
            for line in read_results(store, workload):
                out.write(result_line(line) + b"\n")  # always valid JSON Lines (rqp.jsonsafe)
    finally:
        if args.output:
            out.close()
    return 0


def _peek_all(mq: Any, queue: str, page: int) -> Iterator[Any]:
    """Every message of ``queue``, without consuming any: a Redis stream is read page by page
    (XRANGE from after the last id seen); a queue that can only show its front (Azure Queue
    Storage: 32 messages) shows that, and says how much it could not."""
    if isinstance(mq, RedisMessageQueue):
        # MessageQueue.peek has no cursor; the stream's key and client are RedisMessageQueue's own
        key, client = mq._key(queue), mq._r
        start = "-"
        while True:
            entries = client.xrange(key, min=start, count=page)
            for mid, fields in entries:
                yield Message(mid.decode(), fields[b"b"], mid.decode(), 0)
            if len(entries) < page:
                return
            start = "(" + entries[-1][0].decode()
    msgs = mq.peek(queue, page)
    yield from msgs
    backlog = mq.length(queue)
    if backlog > len(msgs):
        print(
            f"rqp: note: looked at the first {len(msgs)} of about {backlog:,} messages: this queue shows only its front "
            "without consuming it (drop --peek to read them all)",
            file=sys.stderr,
        )


def cmd_events(args: argparse.Namespace) -> int:
    settings = _settings(args)
    r = connect_redis(settings)
    mq = open_message_queue(settings, r)
    store = open_blob_store(settings.blob_url)
    keys = open_key_provider(settings)
    trust = open_trust_store(settings)
    cache: dict[str, Workload] = {}

    def workload_for(wid: str) -> Workload:
        if wid not in cache:
            cache[wid] = Workload.open(store, keys, wid, trust)
        return cache[wid]

    queue = settings.events_queue if args.queue == "events" else settings.status_queue
    shown = 0
    deadline = time.monotonic() + args.wait
    while True:
        msgs = (
            _peek_all(mq, queue, max(1, args.max))
            if args.peek
            else mq.receive(queue, args.max, wait=min(1.0, args.wait))
        )
        got = 0
        for m in msgs:
            got += 1
            wid = peek_workload(m.body)
            if args.workload and wid != args.workload:
                continue
            try:
                env = open_envelope(m.body, workload_for, queue)
            except RqpError as exc:
                print(json.dumps({"error": str(exc), "message_id": m.id}), file=sys.stderr)
                if not args.peek:
                    mq.delete(queue, m)
                continue
            items = env.payload if isinstance(env.payload, list) else [env.payload]
            for item in items:
                print(json.dumps(item), flush=True)
                shown += 1
            if not args.peek:
                mq.delete(queue, m)
        if args.peek or (not got and (not args.follow and time.monotonic() >= deadline)):
            break
    print(f"{shown} {args.queue} records", file=sys.stderr)
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from .control import retry_failed  # noqa: PLC0415
    from .control_cli import actor  # noqa: PLC0415

    settings = _settings(args)
    r = connect_redis(settings)
    count = retry_failed(r, args.workload, actor())
    if not count:
        print(f"workload {args.workload} has no failed records")
        return 0
    print(
        f"re-queued {count} failed records of {args.workload}; run 'rqp-scheduler run {args.workload}' (or a serving scheduler picks it up)"
    )
    return 0


# ------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rqp", description="rqp: encrypted parallel batch processing on Redis and RQ")
    ap.add_argument("--version", action="version", version=f"rqp {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML settings file (default: RQP_CONFIG)")
    common.add_argument("--redis-url", help="default: RQP_REDIS_URL")
    common.add_argument("--blob-url", help="default: RQP_BLOB_URL")
    common.add_argument("--kek", help="private key-encryption key PEM (default: RQP_KEK_FILE)")
    common.add_argument("--trusted-signers", help="submitters' public keys (default: RQP_TRUSTED_SIGNERS_FILE)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "keygen", help="create an RSA key-encryption key pair, or (--signing) a submitter's Ed25519 signing key"
    )
    p.add_argument("--signing", action="store_true", help="a submitter signing key (default out: keys/signer.pem)")
    p.add_argument("--out", help="private key path (default: keys/kek.pem, or keys/signer.pem with --signing)")
    p.add_argument("--public-out")
    p.add_argument("--bits", type=int, default=3072)
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("pack", parents=[common], help="encrypt a data file and a script and upload them as a workload")
    p.add_argument("data")
    p.add_argument("script")
    p.add_argument("--id", help="workload id (default: generated from the data file name)")
    p.add_argument(
        "--format",
        choices=["jsonl", "csv", "script"],
        default="jsonl",
        help="how to split the data into records (script: its parse())",
    )
    p.add_argument("--delimiter", default=",")
    p.add_argument(
        "--id-field",
        metavar="FIELD",
        help="the field holding each record's own id, carried through statuses, results and failures "
        "(default: ids are 0-based record numbers)",
    )
    p.add_argument("--public-key", help="public KEK PEM (default: RQP_KEK_PUBLIC_FILE, or the private key)")
    p.add_argument(
        "--signing-key",
        help="your Ed25519 signing key PEM (default: RQP_SIGNING_KEY_FILE, or RQP_SIGNING_KEY_VAULT_ID)",
    )
    p.add_argument("--replace", action="store_true", help="overwrite an existing workload of that id")
    p.add_argument("--submit", action="store_true", help="hand it to a serving scheduler")
    p.add_argument("--priority", choices=PRIORITY_CHOICES, help=PRIORITY_HELP)
    p.add_argument("--progress", action="store_true", help="show progress even when not on a terminal")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser(
        "signer",
        parents=[common],
        help="the configured signing key: fingerprint, or its public key for a trusted-signers file",
    )
    p.add_argument(
        "--signing-key", help="Ed25519 signing key PEM (default: RQP_SIGNING_KEY_FILE, or RQP_SIGNING_KEY_VAULT_ID)"
    )
    p.add_argument(
        "--pem", action="store_true", help="print the public key (PEM) to append to RQP_TRUSTED_SIGNERS_FILE"
    )
    p.set_defaults(func=cmd_signer)

    p = sub.add_parser("submit", parents=[common], help="hand a packed workload to a serving scheduler")
    p.add_argument("workload")
    p.add_argument("--priority", choices=PRIORITY_CHOICES, help=PRIORITY_HELP)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser(
        "status",
        parents=[common],
        help="counts by state, throughput and ETA; exit 0 done, 1 done with failures or cancelled, "
        "3 not finished, 4 failed, 7 unknown",
    )
    p.add_argument("workload")
    p.add_argument("--watch", action="store_true", help="live progress until the workload ends")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--record",
        type=int,
        metavar="N",
        help="one record's decrypted status record (0-based id; text on a terminal, JSON with --json or in a pipe)",
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("list", parents=[common], help="recent workloads, packed ones too, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--wide", action="store_true", help="whole ids, however wide the table (always so in a pipe)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("results", parents=[common], help="verify and decrypt a workload's results")
    p.add_argument("workload")
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    p.add_argument("--failed", action="store_true", help="the failed records with their errors instead")
    p.add_argument("--output", "-o")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("events", parents=[common], help="read the status (default) or events queue")
    p.add_argument("--queue", choices=["status", "events"], default="status")
    p.add_argument("--workload")
    p.add_argument("--peek", action="store_true", help="look without consuming")
    p.add_argument("--follow", "-f", action="store_true")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for messages")
    p.add_argument("--max", type=int, default=32)
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("retry", parents=[common], help="re-queue a workload's failed records")
    p.add_argument("workload")
    p.add_argument("--failed", action="store_true", required=True)
    p.set_defaults(func=cmd_retry)

    from .rotate import add_rotate_command  # noqa: PLC0415

    add_rotate_command(sub)

    from .control_cli import add_control_commands  # noqa: PLC0415

    add_control_commands(sub, common)

    from .redis_acl import add_redis_acl_command  # noqa: PLC0415

    add_redis_acl_command(sub)

    _add_plugin_commands(sub)
    return ap


#: entry-point group through which installed role packages add ``rqp`` sub-commands (each entry
#: is a callable taking the sub-parsers); ``shared`` imports no role
COMMANDS_GROUP = "rqp.commands"


def _add_plugin_commands(sub: Any) -> None:
    from importlib.metadata import entry_points  # noqa: PLC0415 - only when the parser is built

    names = set()
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            ep.load()(sub)
        except ImportError as exc:  # a half-installed plugin must not break the rest of the CLI
            print(f"rqp: warning: command {ep.name!r} unavailable ({exc})", file=sys.stderr)
            continue
        names.add(ep.name)
    if "metrics" not in names:
        p = sub.add_parser("metrics", help="VM metrics (needs the rqp-metrics-logger package)")
        p.set_defaults(func=lambda _a: _missing_metrics())


def _missing_metrics() -> int:
    print(
        "rqp: error: 'rqp metrics' needs the rqp-metrics-logger package; pip install ./metrics-logger", file=sys.stderr
    )
    return 2


def _no_permission(args: argparse.Namespace, exc: Exception) -> str:
    """Redis's ACL refused a command: name the user, the command and what would work."""
    try:
        user = urllib.parse.urlsplit(_settings(args).redis_url).username or "default"
    except RqpError:
        user = "?"
    first = str(exc).split("\n")[0].rstrip(".")
    return (
        f"the Redis user '{user}' may not do what 'rqp {args.cmd}' needs ({first}); run it with the "
        f"credentials of a role that may (RQP_REDIS_URL and RQP_REDIS_PASSWORD_FILE; 'rqp redis-acl render' "
        f"shows each user's rules)"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RqpError as exc:
        print(f"rqp: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except redis.exceptions.NoPermissionError as exc:
        print(f"rqp: error: {_no_permission(args, exc)}", file=sys.stderr)
        return RedisUnavailableError.exit_code
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        reason = str(exc).split("\n")[0].rstrip(".")
        print(
            f"rqp: error: lost Redis while running 'rqp {args.cmd}' ({reason}); check that it is up and retry",
            file=sys.stderr,
        )
        return RedisUnavailableError.exit_code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
