"""``rqp results``: a workload's results (or its failed records), checked against the signed
summary and decrypted, as JSON Lines or CSV. A workload re-packed after it ended shows its
previous generation's until the new one finishes (``rqp.workload.supersede``)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from dataclasses import asdict

from ..backends import Backends, RoundFacts, check_tombstone, open_head, other_generation, round_facts, sealed_head
from ..csv_layout import plain_text
from ..errors import BlobNotFoundError, IntegrityError, RoundUncheckedError, RqpError, WorkloadError
from ..jsonsafe import result_line
from ..ledger import Ledger, Meta
from ..results import failures_so_far, generation_summary, read_results
from ..round_marker import NOT_CHECKED, AnyRound
from ..status import read_progress
from ..storage import BlobStore
from ..summary import SUMMARY_BLOB, Failure, Summary, read_summary
from ..workload import SUPERSEDED, Workload, blob_name
from .context import backends, open_workload
from .csv_results import COMPACT, write_csv_results
from .formatting import FINISHED_STATES
from .status import unseal_error
from .verify import any_round_option

__all__ = ["cmd_results", "generation_summary", "read_results", "register", "superseded"]


def _no_results(b: Backends, workload_id: str, exc: BlobNotFoundError) -> RqpError:
    """Why a workload has no summary yet, from what Redis says of it (the blob store's own error
    when Redis cannot tell)."""
    try:
        p = read_progress(b.redis, workload_id)
    except RqpError:
        return exc
    if p is None:
        return WorkloadError(
            f"workload {workload_id} has no results: it is packed but was never scheduled; run "
            f"'rqp-scheduler run {workload_id}' (or 'rqp submit {workload_id}' for a serving scheduler)"
        )
    if p.state == "failed":
        error = unseal_error(b, workload_id) or p.error or "no reason recorded"
        return WorkloadError(f"workload {workload_id} failed as a whole and has no results: {error}")
    if p.state in FINISHED_STATES:
        return exc  # finished, yet no summary: the blob store's word (deleted, or another store)
    total = f"{p.total:,}" if p.total is not None else f"at least {p.enqueued:,}, the data still being read"
    return WorkloadError(
        f"workload {workload_id} is not finished yet ({p.state}: {p.done:,} done and {p.failed:,} failed of {total}); "
        f"watch it with 'rqp status {workload_id} --watch' and run 'rqp results {workload_id}' once it is done"
    )


def _failures_so_far(b: Backends, workload: Workload) -> list[Failure]:
    """A running workload's records failed for good until now, with their reasons (sealed status
    records, read in batches); says on stderr that the list is not final."""
    led = Ledger(b.redis, workload.id)
    if not led.exists():
        raise WorkloadError(
            f"workload {workload.id} is not known to Redis; schedule it first (rqp-scheduler run {workload.id})"
        )
    whole = led.state() == "failed"
    if whole and not led.failed_ids():
        # failed as a whole (its script's import, its data, its parse()): no record failed on its own
        error = unseal_error(b, workload.id) or led.meta().get(Meta.ERROR) or "no reason recorded"
        raise WorkloadError(f"workload {workload.id} failed as a whole, no record failed on its own: {error}")
    out = failures_so_far(led, workload)
    if whole:
        error = unseal_error(b, workload.id) or led.meta().get(Meta.ERROR) or "no reason recorded"
        print(
            f"workload {workload.id} failed as a whole ({error}); {len(out):,} records failed before it",
            file=sys.stderr,
        )
    else:
        print(
            f"workload {workload.id} is {led.state()}: {len(out):,} records failed so far (not final)", file=sys.stderr
        )
    return out


def superseded(b: Backends, workload: Workload) -> Workload | None:
    """The previous generation of ``workload`` when it was re-packed after it ended and the new
    generation has not finished (``rqp.workload.supersede``), opened under the same checks as any
    workload; None when there is none, or it was shredded (``--shred-previous``)."""
    store = b.blobs
    if not store.exists(blob_name(workload.id, SUPERSEDED + SUMMARY_BLOB)):
        return None
    previous = Workload.open(store, b.keys, workload.id, b.trust, generation=SUPERSEDED)
    check_tombstone(b.redis, previous)
    return previous


def _previous_or_refuse(b: Backends, workload: Workload, previous: Workload, any_round: AnyRound) -> Summary:
    """The superseded generation's summary, when Redis says what ``rqp results`` may show while
    the current generation has no summary: the new generation running (its sealed head open),
    or not started (Redis's head is the superseded generation's own, confirming its round).
    Refused when the current generation's head says it ended (its summary was removed: an
    older generation is not its results), when the superseded one was packed after it, and --
    as every reader's round rule (``RoundFacts``) -- when no head confirms anything, unless
    ``--any-round``, or when the head is neither's, unless ``--any-round=older``."""
    wid = workload.id
    if previous.manifest.created >= workload.manifest.created:
        raise IntegrityError(
            f"workload {wid}: superseded/ holds a generation packed at {_stamp(previous.manifest.created)}, not before "
            f"the current one ({_stamp(workload.manifest.created)}): put back in the blob store; not shown"
        )
    current = sealed_head(b.redis, workload)
    if current is not None and current[1]:
        raise IntegrityError(
            f"workload {wid}: its current generation (manifest {workload.manifest.content_digest()[:16]}...) ended "
            f"(its sealed head says round {current[0]} closed) but its {SUMMARY_BLOB} is missing from the blob store: "
            f"deleted or lost; superseded/ holds an older generation, which is not its results -- put the summary "
            f"back from a backup, or re-run 'rqp-scheduler run {wid}'"
        )
    bound = workload.manifest.supersedes  # signed: which generation, at which round, this one replaced
    if bound is not None and bound["manifest"] != previous.manifest.content_digest():
        raise IntegrityError(
            f"workload {wid}: superseded/ holds a generation (manifest {previous.manifest.content_digest()[:16]}...) "
            f"other than the one its current generation's signed manifest says it replaced "
            f"({bound['manifest'][:16] or 'none readable'}...): put there in the blob store; not shown -- "
            f"'rqp results {wid}' once the current generation has finished"
        )
    summary = generation_summary(b.blobs, previous, bound["summary_sha256"] if bound is not None else None)
    if current is not None and bound is None:
        # running, packed without the record (an older rqp): nothing signed says which older
        # generation superseded/ should hold, nor at which round -- the round rule's answer
        note = f" ({NOT_CHECKED}: {_UNBOUND})"
        if not any_round:
            raise RoundUncheckedError(
                f"workload {wid}: the previous generation's round {summary.sealed_round} could not be checked as the "
                f"one the current generation replaced ({_UNBOUND}); accept it with 'rqp results {wid} --any-round', "
                f"or read the results once the current generation has finished"
            )
        print(f"workload {wid}: the previous generation's round {summary.sealed_round}{note}", file=sys.stderr)
    if current is None:  # the new generation not started: Redis's head must be the superseded one's
        own = open_head(b.redis, previous)
        foreign = other_generation(b.redis, previous)
        facts = RoundFacts(own, None, previous.manifest.content_digest() if foreign else "")
        note = facts.check(wid, summary.sealed_round, any_round, "results")
        if note:
            print(f"workload {wid}: the previous generation's round {summary.sealed_round}{note}", file=sys.stderr)
    return summary


#: why a superseded generation cannot be bound to the one its successor replaced
_UNBOUND = (
    "the current generation's signed manifest does not record which generation it replaced (packed by an rqp "
    "before it did), so superseded/ could hold any older one, at any of its rounds"
)


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def cmd_results(args: argparse.Namespace) -> int:
    b = backends(args)
    store = b.blobs
    workload = open_workload(b, args.workload)
    command = "results --failed" if args.failed else "results"
    summary: Summary | None = None
    try:
        summary = read_summary(store, workload)
        failures = summary.failures
        # no sealed head confirming the round: these may be an older round's results put back
        # (as 'rqp verify' and 'rqp proof'): exit 11 unless --any-round, said on stderr either way
        facts = round_facts(b.redis, store, workload)
        note = facts.check(
            workload.id, summary.sealed_round, args.any_round, command, "failures" if args.failed else ""
        )
        if note:
            print(f"workload {workload.id}: round {summary.sealed_round}'s results{note}", file=sys.stderr)
    except BlobNotFoundError as exc:
        previous = superseded(b, workload)
        if previous is not None:
            # re-packed after it ended: the previous generation's results stay what it shows
            # until the new one finishes (said on stderr: stdout is the results alone)
            summary = _previous_or_refuse(b, workload, previous, args.any_round)
            print(
                f"workload {workload.id}: its new generation (packed {_stamp(workload.manifest.created)}) has not "
                f"finished; showing the previous generation (packed {_stamp(previous.manifest.created)}, signed by "
                f"{previous.signer})",
                file=sys.stderr,
            )
            workload = previous
            failures = summary.failures
        elif not args.failed:
            raise _no_results(b, args.workload, exc) from None
        else:
            failures = _failures_so_far(b, workload)  # still running: what has failed until now
    keyed = workload.manifest.id_field is not None
    if args.format == "parquet":
        return _parquet(args, store, workload, failures, summary)
    out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115 - closed below, unless stdout
    try:
        if args.format == "csv":
            text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
            writer = csv.writer(text)
            if args.failed:
                writer.writerow(["id", *(["key"] if keyed else []), "attempts", "error"])
                for f in failures:
                    key = [plain_text(f.key or "")] if keyed else []
                    writer.writerow([f.id, *key, "" if f.attempts is None else f.attempts, plain_text(f.error or "")])
            else:
                write_csv_results(writer, lambda: read_results(store, workload, summary), keyed=keyed)
            text.detach()
        elif args.failed:
            for f in failures:
                doc = asdict(f)
                if doc["key"] is None:
                    del doc["key"]
                out.write(json.dumps(doc, allow_nan=False, separators=COMPACT).encode() + b"\n")
        else:
            for line in read_results(store, workload, summary):
                out.write(result_line(line) + b"\n")  # always valid JSON Lines (rqp.jsonsafe)
    finally:
        if args.output:
            out.close()
    return 0


def _parquet(
    args: argparse.Namespace, store: BlobStore, workload: Workload, failures: list[Failure], summary: Summary | None
) -> int:
    """``--format parquet``: the results (or failures) as a Parquet file (``rqp.client``'s writer:
    the result's fields as columns when every result is a flat object)."""
    from pathlib import Path  # noqa: PLC0415

    from ..client._frames import failures_table, to_parquet  # noqa: PLC0415 - pyarrow only for Parquet
    from ..client._stream import parse_line  # noqa: PLC0415

    if not args.output:
        raise WorkloadError("--format parquet writes a file: add -o FILE.parquet")
    if args.failed:
        failures_table(failures, Path(args.output))
    else:
        to_parquet(
            lambda: (parse_line(line) for line in read_results(store, workload, summary) if line), Path(args.output)
        )
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``results`` on ``rqp``'s sub-commands."""
    p = sub.add_parser("results", parents=[common], help="verify and decrypt a workload's results")
    p.add_argument("workload")
    p.add_argument(
        "--format",
        choices=["jsonl", "csv", "parquet"],
        default="jsonl",
        help="parquet: a file (-o), the result's fields as columns when it is a flat object; needs rqp[dataframe]",
    )
    p.add_argument("--failed", action="store_true", help="the failed records with their errors instead")
    p.add_argument("--output", "-o")
    any_round_option(p, "show results")
    p.set_defaults(func=cmd_results)
