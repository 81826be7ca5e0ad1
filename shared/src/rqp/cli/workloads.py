"""``rqp pack``, ``rqp submit``, ``rqp list``: a workload from a data file and a script to the
blob store, into a serving scheduler's hands, and the table of recent ones."""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import redis

from ..backends import Backends
from ..connect import open_operator_key, open_signing_key
from ..errors import ConfigError, IntegrityError, RedisUnavailableError, RqpError, WorkloadError
from ..ledger import (
    PRIORITIES,
    SUBMISSIONS,
    Ledger,
    Priority,
    Refusal,
    announce_submission,
    clear_refusal,
    submit,
    workloads,
)
from ..records import csv_header_repeats
from ..status import read_progress
from ..workload import (
    Manifest,
    NotAManifestError,
    blob_name,
    looks_like_csv,
    new_workload_id,
    pack,
    unreadable_manifest,
)
from .context import backends, set_priority, verify_counts
from .formatting import FINISHED_STATES, clip, fmt_age, percent, table, terminal_width, when
from .status import shown_refusal

__all__ = ["PRIORITY_CHOICES", "PRIORITY_HELP", "cmd_list", "cmd_pack", "cmd_submit", "register"]

#: ``--priority`` of pack and submit (``rqp.ledger.Priority``)
PRIORITY_CHOICES = tuple(p.value for p in Priority)
PRIORITY_HELP = "queue its chunks ahead of (high) or behind (low) normal workloads; 'rqp priority' changes it later"


#: ``--format`` when none is given
DEFAULT_FORMAT = "jsonl"

#: ``--expires`` units
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h`` or ``7d`` as seconds (argparse type)."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], 0)
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: use e.g. 3600, 15m, 12h or 7d") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: it must be more than 0")
    return seconds


def parquet_rows(path: Path, fmt: str) -> tuple[Path | Iterable[bytes], str]:
    """A Parquet file (``--format parquet``, or a ``.parquet`` file under the default format) as
    its rows in JSON Lines, streamed (``rqp.client``'s reader: pyarrow, ``rqp[dataframe]``);
    any other file as it is."""
    if fmt == "parquet" or (fmt == "jsonl" and path.suffix.lower() in (".parquet", ".pq")):
        from ..client._sources import data_source  # noqa: PLC0415 - pyarrow only for Parquet

        source = data_source(path, "parquet")
        return source.pieces, source.fmt
    return path, fmt


def cmd_pack(args: argparse.Namespace) -> int:
    b = backends(args, need_private=False)
    store, keys = b.blobs, b.keys
    signer = open_signing_key(b.settings)
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

    if args.shred_previous and not args.replace:
        raise WorkloadError("--shred-previous shreds the generation --replace supersedes; pass --replace too")
    if not args.replace and store.exists(blob_name(wid, "manifest.json")):
        raise _already_packed(b, wid, args)
    data, fmt = parquet_rows(Path(args.data), args.format or DEFAULT_FORMAT)
    if fmt == "csv" and isinstance(data, Path):
        twice = csv_header_repeats(data, args.delimiter)
        if twice is not None:
            raise WorkloadError(
                f"{args.data}'s header names the column {twice!r} twice (only one could count); rename one and pack again"
            )
    looks = looks_like_csv(Path(args.data), args.delimiter) if fmt == "jsonl" and isinstance(data, Path) else None
    if looks is not None:
        said = f"{args.data} looks like CSV, not JSON Lines (its first line {clip(looks.header, 60)!r} is not JSON)"
        if args.format is None:  # JSON Lines by default: every record would fail, and only after the run
            raise ConfigError(f"{said}; pack it with --format csv{looks.flag}")
        print(f"rqp: warning: {said}; packing it as JSON Lines as --format jsonl says", file=sys.stderr)
    ended = args.replace and store.exists(blob_name(wid, "summary.enc"))
    m = pack(
        store,
        keys,
        wid,
        data,
        Path(args.script),
        fmt=fmt,
        delimiter=args.delimiter,
        replace=args.replace,
        progress=progress,
        signer=signer,
        id_field=args.id_field,
        expires=time.time() + args.expires if args.expires else None,
        shred_previous=args.shred_previous,
    )
    if show:
        print(file=sys.stderr)
    if ended and args.shred_previous:
        print(
            f"rqp: the ended generation of {wid} was superseded: its results are deleted, and its data key is "
            f"shredded when the new generation starts",
            file=sys.stderr,
        )
    elif ended:
        print(
            f"rqp: the ended generation of {wid} was superseded: 'rqp results {wid}' shows its results until the "
            f"new generation finishes",
            file=sys.stderr,
        )
    if m.data.plain_size == 0:
        print(f"rqp: warning: {args.data} is empty: workload {wid} has no records to process", file=sys.stderr)
    try:
        if args.priority:
            set_priority(b, signer, wid, args.priority)
        if args.submit:
            submit(b.redis, wid)
            announce_submission(b.redis)
    except (RedisUnavailableError, redis.ConnectionError, redis.TimeoutError) as exc:
        reason = str(exc).split("\n")[0].rstrip(".")
        raise RedisUnavailableError(
            f"workload {wid} is packed (its blobs are uploaded to {store.location}) but not {_handed(args)}: "
            f"{reason}; run '{_submit_command(wid, args)}' when Redis is back"
        ) from None
    print(wid)
    print(
        f"packed workload {wid}: data {m.data.plain_size:,} bytes -> {m.data.size:,} encrypted, script {m.script.plain_size:,} bytes, KEK {m.kek_id}, signed by {signer.fingerprint}, in {store.location}"
        + (" (submitted)" if args.submit else ""),
        file=sys.stderr,
    )
    return 0


def _handed(args: argparse.Namespace) -> str:
    """What ``pack`` did not do of what it was asked, Redis being away."""
    return "submitted" if args.submit else "given its priority"


def _submit_command(wid: str, args: argparse.Namespace) -> str:
    return f"rqp submit {wid}" + (f" --priority {args.priority}" if args.priority else "")


def _already_packed(b: Backends, wid: str, args: argparse.Namespace) -> RqpError:
    """``pack`` of an id that is packed already: when Redis does not know it (a ``pack --submit``
    whose upload succeeded and whose submit did not), the way on is ``rqp submit``, not only
    another --id or --replace; with Redis still away, that is said as such (exit 6)."""
    where = b.blobs.location
    other = "else choose another --id or pass --replace to pack it again"
    try:
        r = b.redis
        known = Ledger(r, wid).exists()
        queued = wid.encode() in r.lrange(SUBMISSIONS, 0, -1)
    except (RedisUnavailableError, redis.ConnectionError, redis.TimeoutError) as exc:
        if not (args.submit or args.priority):  # a packer without Redis: it was not asked for
            return WorkloadError(
                f"workload {wid} already exists in {where}; choose another --id or pass --replace (if it is this "
                f"data and was never submitted, '{_submit_command(wid, args)}' hands it to a scheduler)"
            )
        reason = str(exc).split("\n")[0].rstrip(".")
        return RedisUnavailableError(
            f"workload {wid} is packed already (its blobs are in {where}) and not submitted: {reason}; if it is "
            f"this data, run '{_submit_command(wid, args)}' when Redis is back, {other}"
        )
    except redis.ResponseError:  # a Redis user that may not look: the plain refusal
        known, queued = True, False
    if known or queued:
        return WorkloadError(f"workload {wid} already exists in {where}; choose another --id or pass --replace")
    return WorkloadError(
        f"workload {wid} is packed already in {where} and was never submitted: if it is this data, run "
        f"'{_submit_command(wid, args)}'; {other}"
    )


def cmd_submit(args: argparse.Namespace) -> int:
    b = backends(args)
    store = b.blobs
    if not store.exists(blob_name(args.workload, "manifest.json")):
        raise WorkloadError(f"workload {args.workload} not found in {store.location}; pack it first with 'rqp pack'")
    refusal = _refused_before(b, args.workload)
    if refusal is not None and not args.again:
        # the same manifest again is refused again, unless the scheduler's trust changed since
        raise IntegrityError(
            f"workload {args.workload} was refused by the scheduler at {when(refusal.at, short=True)}: {refusal.reason} "
            f"-- not submitted again; fix that (re-pack with --replace if it must be signed again), or pass --again "
            f"once the scheduler's keys or trusted signers are fixed"
        )
    if args.priority:
        set_priority(b, open_operator_key(b.settings), args.workload, args.priority)
    if refusal is not None:
        clear_refusal(b.redis, args.workload)  # 'rqp status --watch' now waits for the scheduler's new word
    submit(b.redis, args.workload)
    announce_submission(b.redis)  # a serving scheduler takes it now, not at its next look
    print(f"submitted {args.workload}; a running 'rqp-scheduler serve' picks it up")
    return 0


def _refused_before(b: Backends, workload_id: str) -> Refusal | None:
    """The scheduler's refusal of ``workload_id`` while Redis holds no state of it; None when a
    Redis user from before refusals were kept may not read them (the submission goes ahead)."""
    try:
        return shown_refusal(b, workload_id) if Ledger(b.redis, workload_id).state() is None else None
    except redis.exceptions.NoPermissionError:
        return None


def _packed_workloads(b: Backends, known: set[str], unreadable: dict[str, str]) -> list[tuple[str, float]]:
    """(id, packed at) of the workloads in the blob store that Redis does not know: packed, not
    scheduled. The manifests' creation times are read unauthenticated: they only order the list.
    One whose ``manifest.json`` is not a manifest goes into ``unreadable`` with the reason."""
    settings = b.settings
    parts = urllib.parse.urlsplit(settings.blob_url)
    if parts.scheme in ("", "file"):
        root = parts.netloc + parts.path if parts.scheme else settings.blob_url
        if not os.path.isdir(root):
            return []  # no store here yet: nothing packed (and looking creates nothing)
    store = b.blobs
    found = []
    for name in store.list("workloads/"):
        wid, _, leaf = name.removeprefix("workloads/").partition("/")
        if leaf != "manifest.json" or wid in known:
            continue
        try:
            created = Manifest.from_json(store.get(name), wid).created
        except NotAManifestError as exc:
            unreadable[wid] = str(exc)
            created = 0.0
        except RqpError:
            created = 0.0
        found.append((wid, created))
    return found


def _priorities(r: redis.Redis) -> dict[str, str]:
    """Each workload's priority as the scheduler reads it (``rqp:priorities``; one not named
    there is normal); none when this Redis user may not read them."""
    try:
        raw = r.hgetall(PRIORITIES)
    except redis.ResponseError:
        return {}
    text = {
        (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in raw.items()
    }
    return {wid: level for wid, level in text.items() if level in PRIORITY_CHOICES}


def cmd_list(args: argparse.Namespace) -> int:
    b = backends(args)
    settings, r = b.settings, b.redis
    now = time.time()
    rows: list[tuple[float, list[str]]] = []
    unverified = unchecked = refused = 0
    #: workloads whose manifest.json is junk: marked, each with its one line, the rest listed
    unreadable: dict[str, str] = {}
    started = workloads(r, newest_first=True)
    known = set(started)
    priorities = _priorities(r)
    for wid in started[: args.limit]:  # older ones cannot be among the newest, packed or not
        p = read_progress(r, wid)
        if p is None:
            continue
        if p.state in FINISHED_STATES:
            p = verify_counts(b, p, strict=False)  # one workload's stale summary: marked, the rest listed
            unverified += p.verified is False and not p.round_note
            unchecked += p.verified is False and bool(p.round_note)
            why = unreadable_manifest(b.blobs, wid) if p.verified is False and not p.round_note else None
            if why:
                unreadable[wid] = why
                unverified -= 1
        if not p.reading:
            progress = percent(p.fraction or 0.0)
        else:
            progress = "-" if p.state in FINISHED_STATES else f"reading ({p.enqueued:,})"
        total = f"{p.total:,}" if p.total is not None else "?"
        # one that failed before it started (its script did not load) has only its end time
        at = p.started_at or p.finished_at
        shown = p.state + ("*" if p.verified is False else "")
        age = fmt_age(now - at) if at else "-"
        level = priorities.get(wid, Priority.NORMAL.value)
        rows.append((at or 0.0, [wid, shown, level, progress, f"{p.done:,}/{total}", f"{p.failed:,}", age]))
    try:
        submitted = {x.decode() if isinstance(x, bytes) else str(x) for x in r.lrange(SUBMISSIONS, 0, -1)}
    except redis.ResponseError:  # a Redis user that may not read the submissions
        submitted = set()
    try:
        packed = _packed_workloads(b, known, unreadable)
    except RqpError as exc:
        print(f"rqp: warning: packed workloads not listed: {exc}", file=sys.stderr)
        packed = []
    for wid, created in packed:
        # refused by the scheduler (as Redis says: unverified, marked *)
        if wid in unreadable:
            state = "unreadable*"
        else:
            state = "refused*" if shown_refusal(b, wid) else "submitted" if wid in submitted else "packed"
        refused += state == "refused*"
        level = priorities.get(wid, Priority.NORMAL.value)
        rows.append((created, [wid, state, level, "-", "-", "-", fmt_age(now - created) if created else "-"]))
    if not rows:
        print(
            f"no workloads (in Redis at {settings.redis_url_safe}, nor packed in {settings.blob_url}); pack one with 'rqp pack DATA SCRIPT'"
        )
        return 0
    rows.sort(key=lambda row: row[0], reverse=True)
    more = len(rows) - args.limit + len(started[args.limit :])
    grid = [
        ["WORKLOAD", "STATE", "PRIORITY", "PROGRESS", "DONE", "FAILED", "AGE"],
        *(cells for _, cells in rows[: args.limit]),
    ]
    fit = terminal_width() if sys.stdout.isatty() and not args.wide else None
    lines, clipped = table(grid, right={"DONE", "FAILED", "AGE"}, width=fit)
    print("\n".join(lines))
    if clipped:
        print("(ids shortened: --wide shows them whole)")
    if unverified:
        print("* ended, but no sealed summary vouches for these counts here (no KEK, or its summary does not open)")
    if unchecked:
        # the summary opened and is genuine, but no sealed head confirms its round (as rqp status says)
        print(
            "* ended, but no sealed head in Redis confirms its sealed summary's round is the current one "
            "(round not checked); 'rqp status W' says why"
        )
    for wid, why in sorted(unreadable.items()):
        print(f"* {wid}: {why}")
    if refused:
        print("refused*: the scheduler would not run it, as Redis says (unverified); 'rqp status W' says why")
    if more > 0:
        print(f"({more:,} older not shown; --limit N shows more)")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``pack``, ``submit`` and ``list`` on ``rqp``'s sub-commands."""
    p = sub.add_parser("pack", parents=[common], help="encrypt a data file and a script and upload them as a workload")
    p.add_argument("data")
    p.add_argument("script")
    p.add_argument("--id", help="workload id (default: generated from the data file name)")
    p.add_argument(
        "--format",
        choices=["jsonl", "csv", "script", "parquet"],
        help="how to split the data into records (script: its parse(); parquet: its rows, needs rqp[dataframe]; "
        "a .parquet file is read as Parquet); default jsonl, and a file whose first line is a CSV header is then "
        "refused with the flags that read it",
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
    p.add_argument(
        "--replace",
        action="store_true",
        help="pack a new version of an existing workload of that id: one that ended starts a new generation "
        "(its results stay readable until the new one finishes); one that has not ended is overwritten, and "
        "the scheduler refuses it while the old one runs",
    )
    p.add_argument(
        "--shred-previous",
        action="store_true",
        help="with --replace: delete the ended generation's results and shred its data key (once the new "
        "generation starts) instead of keeping them readable",
    )
    p.add_argument(
        "--expires",
        type=duration,
        metavar="DURATION",
        help="the signature stops being good for running the workload after this long (e.g. 12h, 7d); "
        "its results stay readable",
    )
    p.add_argument("--submit", action="store_true", help="hand it to a serving scheduler")
    p.add_argument("--priority", choices=PRIORITY_CHOICES, help=PRIORITY_HELP)
    p.add_argument("--progress", action="store_true", help="show progress even when not on a terminal")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("submit", parents=[common], help="hand a packed workload to a serving scheduler")
    p.add_argument("workload")
    p.add_argument("--priority", choices=PRIORITY_CHOICES, help=PRIORITY_HELP)
    p.add_argument(
        "--again",
        action="store_true",
        help="submit a workload the scheduler refused, unchanged (after its keys or trusted signers were fixed)",
    )
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("list", parents=[common], help="recent workloads, packed ones too, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--wide", action="store_true", help="whole ids, however wide the table (always so in a pipe)")
    p.set_defaults(func=cmd_list)
