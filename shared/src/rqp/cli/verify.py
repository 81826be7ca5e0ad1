"""``rqp verify``, ``rqp proof`` and ``rqp verify-proof``: results checked against a workload's
signed root (``rqp.results_root``, ``rqp.verification``).

``rqp verify W`` checks the stored results; ``--results FILE`` checks an export as ``rqp results``
writes it (JSON Lines, CSV or Parquet, told by its name or ``--format``). CSV and Parquet do not
keep every JSON type (a CSV cell ``12`` may have been the number or the string; an empty cell a
null, an empty string or no field), so a row's value is checked in each reading its cells allow,
up to ``MAX_READINGS``: a changed value matches none of them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..backends import sealed_head
from ..errors import IntegrityError, WorkloadError
from ..jsonsafe import JSONRejected, loads
from ..proof_check import Expected, check_proof
from ..results_root import RESULT, UNREADABLE, canonical, text_bytes
from ..round_marker import marked_round, round_note
from ..verification import (
    Row,
    check_rows,
    find_key,
    in_record_order,
    json_rows,
    make_proof,
    results_trust,
    stored_rows,
)
from .context import backends, open_workload
from .csv_results import FIXED_COLUMNS, is_flat

__all__ = ["MAX_READINGS", "cmd_proof", "cmd_verify", "cmd_verify_proof", "csv_rows", "register"]

#: readings of one CSV or Parquet row tried before it is called changed
MAX_READINGS = 256
_ABSENT = object()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cell_readings(text: str) -> list[Any]:
    """What a CSV cell may have been (``rqp.cli.csv_results.cell`` in reverse)."""
    if text == "":
        return [_ABSENT, None, ""]
    try:
        parsed = json.loads(text)
    except ValueError:
        return [text]
    return [text] if isinstance(parsed, str) else [parsed, text]


def _value_readings(options: list[list[Any]], names: list[str]) -> Iterator[dict[str, Any]]:
    for combo in itertools.islice(itertools.product(*options), MAX_READINGS):
        yield {n: v for n, v in zip(names, combo, strict=True) if v is not _ABSENT}


def _candidates(flat: dict[str, list[Any]], result: list[Any] | None, error: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if error:
        out.append((UNREADABLE, _sha(text_bytes(error))))
    names = list(flat)
    if names:
        for doc in _value_readings([flat[n] for n in names], names):
            if is_flat(doc):
                out.append((RESULT, _sha(canonical(doc))))
    for value in result or []:
        if value is not _ABSENT:
            out.append((RESULT, _sha(canonical(value))))
    return out or [(RESULT, "")]


def csv_rows(text: io.TextIOBase) -> Iterator[Row]:
    """Rows of a CSV export (``rqp results --format csv``)."""
    reader = csv.reader(text)
    header = next(reader, None)
    if not header or header[0] != "id":
        raise WorkloadError("the CSV file has no 'id' column first: not an export of 'rqp results --format csv'")
    for n, cells in enumerate(reader, 2):
        row = dict(zip(header, cells, strict=False))
        try:
            rid = int(row["id"])
        except ValueError:
            raise WorkloadError(f"line {n} of the CSV file has no record id") from None
        flat = {
            (c[len("result.") :] if c.startswith("result.") and c[7:] in FIXED_COLUMNS else c): _cell_readings(v)
            for c, v in row.items()
            if c not in FIXED_COLUMNS
        }
        if all(v == [_ABSENT, None, ""] for v in flat.values()):
            flat = {}  # an unspread result or an error: no field of its own
        result = _cell_readings(row["result"]) if "result" in row else None
        key = row.get("key")
        yield Row(rid, key if key not in (None, "") else None, _candidates(flat, result, row.get("error", "")))


def _parquet_readings(value: Any) -> list[Any]:
    if value is None:
        return [_ABSENT, None]
    if isinstance(value, float) and value.is_integer():
        return [value, int(value)]
    return [value]


def parquet_rows(path: Path) -> Iterator[Row]:
    """Rows of a Parquet export (``rqp results --format parquet``)."""
    from ..client._frames import _need  # noqa: PLC0415 - pyarrow only for Parquet

    pq = _need("pyarrow.parquet", "dataframe")
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches():
        for rec in batch.to_pylist():
            rid = int(rec["id"])
            key = rec.get("key")
            error = rec.get("error") or ""
            if "result" in rec and rec["result"] is not None:
                result = [json.loads(rec["result"])]
                flat: dict[str, list[Any]] = {}
            else:
                result = None
                flat = {c: _parquet_readings(v) for c, v in rec.items() if c not in FIXED_COLUMNS}
                if error and all(v == [_ABSENT, None] for v in flat.values()):
                    flat = {}
            yield Row(rid, None if key is None else str(key), _candidates(flat, result, error))


def _file_rows(path: Path, fmt: str | None) -> Iterator[Row]:
    fmt = fmt or {".csv": "csv", ".parquet": "parquet"}.get(path.suffix.lower(), "jsonl")
    if not path.exists():
        raise WorkloadError(f"results file {path} does not exist; export it with 'rqp results W -o {path}'")
    if fmt == "parquet":
        yield from parquet_rows(path)
        return
    with open(path, encoding="utf-8", newline="") as fh:
        if fmt == "csv":
            yield from csv_rows(fh)
            return
        docs = []
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                docs.append(json.loads(line))
            except ValueError:
                raise IntegrityError(f"line {n} of {path} is not JSON: the file was altered") from None
            if len(docs) >= 1024:
                yield from json_rows(docs)
                docs = []
        yield from json_rows(docs)


def cmd_verify(args: argparse.Namespace) -> int:
    b = backends(args)
    workload = open_workload(b, args.workload)
    trust = results_trust(b.settings, args.signer)
    if args.results:
        rows = in_record_order(lambda: _file_rows(Path(args.results), args.format))
        report = check_rows(b.blobs, workload, trust, rows, what=f"file {args.results}")
    else:
        report = check_rows(b.blobs, workload, trust, stored_rows(b.blobs, workload))
    report.raise_if_failed()
    note = round_note(sealed_head(b.redis, workload), marked_round(b.blobs, workload), report.round)
    print(
        f"workload {workload.id}: {report.checked:,} records match the round {report.round} root "
        f"{report.root[:16]}... of {report.size:,} records, signed by {report.signer}{note}"
    )
    return 0


def cmd_proof(args: argparse.Namespace) -> int:
    b = backends(args)
    workload = open_workload(b, args.workload)
    rid = args.record if args.key is None else find_key(b.blobs, workload, args.key)
    proof = make_proof(b.blobs, workload, rid)
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
        doc = loads(text)  # strict: no NaN, nesting bounded, UTF-8 only -- one line, never a traceback
    except JSONRejected as exc:
        raise IntegrityError(
            f"the proof {args.proof} is not strict JSON ({exc}); give the file 'rqp proof' wrote"
        ) from None
    try:
        pem = Path(args.signer).read_bytes()
    except OSError as exc:
        raise WorkloadError(f"cannot read --signer {args.signer} ({exc.strerror}); give the results .pub.pem") from None
    expect = Expected(args.workload, args.record, args.key, args.round)
    fp = check_proof(doc, pem, expect)
    rec, round_ = doc["record"], doc["round"]
    asked = " as asked" if expect != Expected() else ""
    print(
        f"record {rec['id']} of workload {doc['workload']} ({rec['kind']}) is in the round {round_} root signed by "
        f"{fp}{asked} (a proof vouches for that round only: 'rqp verify' tells whether it is still the current one)"
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
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("proof", parents=[common], help="a self-contained proof of one record's result")
    p.add_argument("workload")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--record", type=int, help="the record id")
    which.add_argument("--key", help="the data's own id (rqp pack --id-field)")
    p.add_argument("--output", "-o")
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
    p.set_defaults(func=cmd_verify_proof)
