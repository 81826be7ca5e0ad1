"""``rqp verify``, ``rqp proof`` and ``rqp verify-proof``: results checked against a workload's
signed root (``rqp.results_root``, ``rqp.verification``).

``rqp verify W`` checks the stored results; ``--results FILE`` checks an export as ``rqp results``
writes it (JSON Lines, CSV or Parquet, told by its name or ``--format``): it passes only when it
is exactly what ``rqp results`` writes for the workload and round (``rqp.export_check``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..backends import round_facts
from ..errors import WorkloadError
from ..export_check import export_rows
from ..jsonsafe import loads
from ..proof_check import Expected, check_proof
from ..round_marker import OLDER
from ..verification import check_rows, find_key, make_proof, results_trust, stored_rows
from .context import backends, open_workload

__all__ = ["any_round_option", "cmd_proof", "cmd_verify", "cmd_verify_proof", "register"]


def cmd_verify(args: argparse.Namespace) -> int:
    b = backends(args)
    workload = open_workload(b, args.workload)
    trust = results_trust(b.settings, args.signer)
    if args.results:
        rows = export_rows(b.blobs, workload, Path(args.results), args.format)
        report = check_rows(b.blobs, workload, trust, rows, what=f"file {args.results}")
    else:
        report = check_rows(b.blobs, workload, trust, stored_rows(b.blobs, workload))
    report.raise_if_failed()
    facts = round_facts(b.redis, b.blobs, workload)
    if facts.foreign:  # another generation than Redis ran: its manifest is not printed as the one to pin
        facts.check(workload.id, report.round, args.any_round)
    # the manifest the root is about is named: what a consumer pins ('rqp verify-proof --manifest'),
    # so a proof of a superseded generation (rqp pack --replace; its rounds start at 1 again) is refused
    print(
        f"workload {workload.id}: {report.checked:,} records match the round {report.round} root "
        f"{report.root[:16]}... of {report.size:,} records, signed by {report.signer}, manifest "
        f"{workload.manifest.content_digest()}{facts.note(report.round)}"
    )
    facts.check(workload.id, report.round, args.any_round)
    return 0


def cmd_proof(args: argparse.Namespace) -> int:
    b = backends(args)
    workload = open_workload(b, args.workload)
    rid = args.record if args.key is None else find_key(b.blobs, workload, args.key)
    proof = make_proof(b.blobs, workload, rid)
    # a proof is checked offline, where no one can tell its round is current: issue one only
    # for a round the sealed head confirms (as 'rqp verify'), else exit 11 unless --any-round
    note = round_facts(b.redis, b.blobs, workload).check(workload.id, proof["round"], args.any_round, "proof")
    if note:
        print(f"workload {workload.id}: proof of round {proof['round']}{note}", file=sys.stderr)
    text = json.dumps(proof, indent=None, separators=(",", ":")) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_verify_proof(args: argparse.Namespace) -> int:
    try:
        text = Path(args.proof).read_bytes() if args.proof != "-" else sys.stdin.buffer.read()
    except OSError as exc:
        raise WorkloadError(
            f"cannot read the proof {args.proof} ({exc.strerror}); give the file 'rqp proof' wrote"
        ) from None
    try:
        pem = Path(args.signer).read_bytes()
    except OSError as exc:
        raise WorkloadError(f"cannot read --signer {args.signer} ({exc.strerror}); give the results .pub.pem") from None
    expect = Expected(args.workload, args.record, args.key, args.round, args.manifest)
    # the file's bytes: the library refuses what rqp never writes (a number written otherwise,
    # junk), naming the proof -- one rule for the CLI, rqp.verification.check_proof and the client
    fp = check_proof(text, pem, expect, name=f"the proof {args.proof}")
    doc = loads(text)
    rec, round_ = doc["record"], doc["round"]
    asked = " as asked" if expect != Expected() else ""
    print(
        f"record {rec['id']} of workload {doc['workload']} ({rec['kind']}) is in the round {round_} root signed by "
        f"{fp} over manifest {doc['statement'].get('manifest')}{asked} (a proof vouches for that round only, of "
        f"that manifest: 'rqp verify' names the current ones; pin them with --round and --manifest)"
    )
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """``verify``, ``proof`` and ``verify-proof`` on ``rqp``'s sub-commands."""
    p = sub.add_parser("verify", parents=[common], help="check results against the workload's signed root")
    p.add_argument("workload")
    p.add_argument("--results", help="an exported results file (JSON Lines, CSV or Parquet) instead of the stored ones")
    p.add_argument("--format", choices=["jsonl", "csv", "parquet"], help="of --results (default: by its name)")
    p.add_argument(
        "--signer", type=Path, help="the results key's .pub.pem to trust (default: RQP_TRUSTED_RESULTS_KEYS_FILE)"
    )
    any_round_option(p, "accept results")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("proof", parents=[common], help="a self-contained proof of one record's result")
    p.add_argument("workload")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--record", type=int, help="the record id")
    which.add_argument("--key", help="the data's own id (rqp pack --id-field)")
    p.add_argument("--output", "-o")
    any_round_option(p, "issue a proof of a round")
    p.set_defaults(func=cmd_proof)
    p = sub.add_parser("verify-proof", help="check a proof with only the signer's public key")
    p.add_argument("proof", help="the proof file ('-': standard input)")
    p.add_argument("--signer", required=True, help="the results key's .pub.pem")
    p.add_argument("--workload", help="require the proof to be of this workload")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--record", type=int, help="require the proof to be of this record id")
    which.add_argument("--key", help="require the proof to be of the record with this key (rqp pack --id-field)")
    p.add_argument(
        "--round", type=int, help="require the proof to be of this round (rqp verify W names the current one)"
    )
    p.add_argument(
        "--manifest",
        help="require the proof's signed statement to be over this manifest digest ('rqp verify W' prints the "
        "current one): a proof of a superseded generation (rqp pack --replace) is then refused",
    )
    p.set_defaults(func=cmd_verify_proof)


def any_round_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--any-round`` (accept a round no sealed head confirms) and ``--any-round=older`` (also one
    the sealed round marker says was followed by a later round): ``args.any_round`` is False,
    True or ``OLDER`` (``rqp.round_marker.check_round_or_raise``)."""
    # two flags with one destination, not nargs="?": an optional value would swallow the
    # workload id after it ('rqp results --any-round W'); argparse matches the whole
    # '--any-round=older' as an option string before it splits on '='
    p.add_argument(
        "--any-round",
        dest="any_round",
        action="store_const",
        const=True,
        default=False,
        help=f"{what} whose round no sealed head in Redis confirms as current (exit 0, noted)",
    )
    p.add_argument(
        f"--any-round={OLDER}",
        dest="any_round",
        action="store_const",
        const=OLDER,
        help="as --any-round, also when the sealed round marker says a later round was begun",
    )
