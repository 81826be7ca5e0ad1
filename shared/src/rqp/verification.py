"""Checking results against a workload's signed root (``rqp.results_root``), and per-record proofs.

``check_rows`` walks the rows to check (the stored results, or an export read back by
``rqp.cli.verify``) in record order beside ``leaves.bin`` and ``inputs.bin``, streaming all three:
each row's leaf is recomputed and compared with its stored leaf, each record with no row must have
a failed or never-run leaf, and the leaf hashes must fold into the signed root. A problem names its
record; nothing is trusted that the signature does not cover (the summary's failure list is not:
a failed record's leaf is recomputed from its reason).

A **proof** (``make_proof``) is self-contained JSON: the record's leaf inputs and value, its audit
path, the signed statement, the signature and the signer's public key; the path is its hashes concatenated,
base64 (a proof in a 1,000,000-record workload is about 1.8 KB, its public key included). ``check_proof`` needs only
that JSON and the public key the checker trusts -- no KEK, no Redis, no other record.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Settings
from .connect import open_operator_trust
from .errors import ConfigError, IntegrityError, WorkloadError
from .merkle import HASH_SIZE, TreeBuilder, audit_path, iter_hashes, leaf_hash, root_from_path
from .proof_check import PROOF_FORMAT, IssuedProof, check_proof, record_leaf
from .results import generation_summary, read_results
from .results_root import (
    FAILED,
    INPUTS_BLOB,
    LEAVES_BLOB,
    NOT_RUN,
    RESULT,
    Attestation,
    leaf_bytes,
    parse_result_line,
    row_leaf,
    text_bytes,
)
from .signing import TrustStore
from .storage import BlobStore
from .summary import Failure, Summary
from .workload import Workload

__all__ = [
    "MAX_PROBLEMS",
    "Report",
    "Row",
    "attestation_of",
    "check_proof",
    "check_rows",
    "make_proof",
    "proof_doc",
    "results_trust",
    "stored_rows",
]

#: problems listed by name; past it they are counted
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Row:
    """One record as a results file shows it: its id, key, and the (kind, digest) its value stands
    for (an export's row stands for its stored result's only when it is exactly that result's
    rendering, ``rqp.export_check``; otherwise no candidate and the ``problem`` why)."""

    id: int
    key: str | None
    candidates: list[tuple[str, str]]
    #: why the row cannot stand for its record at all (an export row that is not rqp's rendering)
    problem: str | None = None


@dataclass
class Report:
    """What ``check_rows`` found: records checked and the problems, each naming its record."""

    workload: str
    signer: str
    root: str
    size: int
    #: the round the signed root is about (the workload's current one: checked)
    round: int = 1
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    more: int = 0
    #: what a reader adds about the round (``rqp.round_marker.round_note``); "" when the sealed
    #: head confirmed it is current (set by ``Workload.verify``)
    note: str = ""

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.more += 1

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_failed(self) -> None:
        if self.problems:
            extra = f" (and {self.more} more)" if self.more else ""
            raise IntegrityError(
                f"results of workload {self.workload} do not match its signed root: " + "; ".join(self.problems) + extra
            )


def results_trust(settings: Settings, signer_file: Path | None = None) -> TrustStore:
    """The keys a results root may be signed by: ``--signer PUB`` when given, else
    ``RQP_TRUSTED_RESULTS_KEYS_FILE``, else the trusted operators."""
    path = signer_file or settings.trusted_results_keys_file
    if path is not None:
        _check_results_keys_file(Path(path), "--signer" if signer_file else "RQP_TRUSTED_RESULTS_KEYS_FILE")
        return TrustStore.from_file(Path(path), settings.revoked_signers_file)
    trust = open_operator_trust(settings)
    if trust is None:
        raise ConfigError(
            "no results keys to trust: pass --signer SCHEDULER.pub.pem, or set RQP_TRUSTED_RESULTS_KEYS_FILE "
            "(or RQP_TRUSTED_OPERATORS_FILE)"
        )
    return trust


def _check_results_keys_file(path: Path, given_by: str) -> None:
    """``ConfigError`` naming the results key when ``path`` cannot be the results key's public
    half -- checked here, before ``TrustStore.from_file``, whose hints are about the SUBMITTERS'
    trust file (RQP_TRUSTED_SIGNERS_FILE) and would send an operator to the wrong file."""
    fix = "give the results key's .pub.pem ('rqp keygen --results' wrote it next to keys/results.pem)"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"results key {path} ({given_by}) does not exist; {fix}") from None
    except OSError as exc:
        raise ConfigError(f"results key {path} ({given_by}) cannot be read ({exc.strerror}); {fix}") from None
    if b"PRIVATE KEY-----" in raw:
        raise ConfigError(f"results key {path} ({given_by}) is a private key; {fix}, never the private key")
    if b"-----BEGIN PUBLIC KEY-----" not in raw:
        raise ConfigError(f"results key {path} ({given_by}) holds no public key; {fix}")


def attestation_of(summary: Summary, workload_id: str) -> Attestation:
    if summary.root is None:
        raise IntegrityError(
            f"workload {workload_id} has no results root: it finished before rqp recorded one; "
            f"run it again (rqp retry) to get one"
        )
    return Attestation.from_dict(summary.root, workload_id)


def _json_row(doc: dict[str, Any]) -> Row:
    rid = doc.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise WorkloadError(f"a results row has no record id: {json.dumps(doc)[:80]}")
    key = doc.get("key")
    return Row(rid, None if key is None else str(key), [row_leaf(doc)])


def stored_rows(store: BlobStore, workload: Workload) -> Iterator[Row]:
    """The stored results (checked against the summary's digest on the way) as rows."""
    for line in read_results(store, workload):
        if line.strip():
            yield _json_row(parse_result_line(line))


def _leaf(rid: int, key: str | None, mac: bytes, kind: str, digest: str) -> bytes:
    return leaf_hash(leaf_bytes(rid, key, mac, kind, digest))


def _absent_ok(rid: int, leaf: bytes, mac: bytes, failed: dict[int, Failure]) -> bool:
    """Whether record ``rid`` may be absent from the results: its leaf is a failure's (with the
    reason the summary gives) or a never-run record's."""
    f = failed.get(rid)
    if f is not None and leaf == _leaf(rid, f.key, mac, FAILED, hashlib.sha256(text_bytes(f.error or "")).hexdigest()):
        return True
    return leaf == _leaf(rid, None, mac, NOT_RUN, hashlib.sha256(b"").hexdigest())


def _hashes(store: BlobStore, workload: Workload, name: str) -> Iterator[bytes]:
    """The 32-byte hashes of ``leaves.bin`` or ``inputs.bin``; ``IntegrityError`` naming the blob
    when it ends with stray bytes."""
    try:
        yield from iter_hashes(store.iter_chunks(workload.blob(name)))
    except ValueError:
        raise IntegrityError(
            f"{name} of workload {workload.id} ends with stray bytes (not whole {HASH_SIZE}-byte hashes): altered or "
            f"truncated in the blob store; re-run 'rqp-scheduler run {workload.id}'"
        ) from None


def _check_counts(workload_id: str, counts: dict[str, int], size: int) -> None:
    """``IntegrityError`` naming the blob whose hashes are not one per record of the signed root."""
    for name, n in counts.items():
        if n != size:
            what = "leaf hashes" if name == LEAVES_BLOB else "input digests"
            raise IntegrityError(
                f"{name} of workload {workload_id} holds {n:,} {what} but the signed root has {size:,} records: "
                f"{'truncated' if n < size else 'extended'} in the blob store; re-run 'rqp-scheduler run {workload_id}'"
            )


def check_rows(
    store: BlobStore, workload: Workload, trust: TrustStore | None, rows: Iterable[Row], what: str = "results"
) -> Report:
    """Check ``rows`` (in record order) against ``workload``'s signed root; the report names each
    record that differs, is missing, extra or repeated (``IntegrityError`` at once when the root
    itself is not the workload's or not signed by a trusted key)."""
    summary = generation_summary(store, workload)
    att = attestation_of(summary, workload.id)
    signer = att.check(workload, trust, workload.id, summary.sealed_round)
    report = Report(workload.id, signer, att.root.hex(), att.size, att.round)
    failed = {f.id: f for f in summary.failures}
    leaves = _hashes(store, workload, LEAVES_BLOB)
    macs = _hashes(store, workload, INPUTS_BLOB)
    tree = TreeBuilder()
    nxt = 0  # the next record id of the leaves
    counts = {LEAVES_BLOB: 0, INPUTS_BLOB: 0}

    def take() -> tuple[bytes, bytes] | None:
        leaf, mac = next(leaves, None), next(macs, None)
        counts[LEAVES_BLOB] += leaf is not None
        counts[INPUTS_BLOB] += mac is not None
        if leaf is None or mac is None:
            return None
        tree.add(leaf)
        return leaf, mac

    last = -1
    for row in rows:
        report.checked += 1
        rid = row.id
        if rid < 0 or rid >= att.size:
            report.add(f"record {rid} is extra (the workload has records 0-{att.size - 1})")
            continue
        if rid <= last:
            report.add(f"record {rid} appears twice in the {what}")
            continue
        while nxt < rid:  # records with no row
            got = take()
            if got is None:
                break
            if not _absent_ok(nxt, got[0], got[1], failed):
                report.add(f"record {nxt} is missing from the {what}")
            nxt += 1
        got = take()
        nxt += 1
        last = rid
        if got is None:
            break
        leaf, mac = got
        if row.problem is not None:
            report.add(row.problem)
        elif not any(_leaf(rid, row.key, mac, kind, digest) == leaf for kind, digest in row.candidates):
            report.add(f"record {rid} differs from what was signed (its result, key or input changed)")
    while True:
        got = take()
        if got is None:
            break
        if not _absent_ok(nxt, got[0], got[1], failed):
            report.add(f"record {nxt} is missing from the {what}")
        nxt += 1
    counts[LEAVES_BLOB] += sum(1 for _ in leaves)
    counts[INPUTS_BLOB] += sum(1 for _ in macs)
    _check_counts(workload.id, counts, att.size)
    if tree.size != att.size or tree.root() != att.root:
        report.add(
            f"the stored leaf hashes ({LEAVES_BLOB}, {tree.size} leaves) do not fold into the signed root of "
            f"{att.size}: altered, so no record can be vouched for"
        )
    return report


def _record_value(store: BlobStore, workload: Workload, rid: int, failed: dict[int, Failure]) -> dict[str, Any]:
    """What record ``rid``'s leaf stands for: its results row, its failure, or that it never ran."""
    if rid in failed:
        f = failed[rid]
        return {"id": rid, "key": f.key, "kind": FAILED, "value": f.error or ""}
    for line in read_results(store, workload):
        if line.startswith(b'{"id":%d,' % rid):
            doc = parse_result_line(line)
            kind, _ = row_leaf(doc)
            value = doc["result"] if kind == RESULT else doc.get("error", "")
            key = doc.get("key")
            return {"id": rid, "key": None if key is None else str(key), "kind": kind, "value": value}
    return {"id": rid, "key": None, "kind": NOT_RUN, "value": ""}


def find_key(store: BlobStore, workload: Workload, key: str) -> int:
    """The record id of the data's own id ``key`` (``rqp pack --id-field``); ``WorkloadError``
    when the signed statement does not say keys are unique (a key may then name two records,
    and a proof asked by key could be another record's)."""
    summary = generation_summary(store, workload)
    if not attestation_of(summary, workload.id).unique_keys:
        raise WorkloadError(
            f"workload {workload.id}: its signed root does not say its keys are unique (two records share a key, "
            f"a record refused at enqueue had no key recorded, a record never ran (cancelled) so its key was never "
            f"read, or the root predates saying so), so a key does not "
            f"name one record; ask by record id: 'rqp proof {workload.id} --record N' (ids: rqp results)"
        )
    for f in summary.failures:
        if f.key == key:
            return f.id
    for line in read_results(store, workload):
        if line.strip():
            doc = parse_result_line(line)
            if doc.get("key") is not None and str(doc["key"]) == key:
                return int(doc["id"])
    raise WorkloadError(f"workload {workload.id} has no record with key {key!r}; check the key (rqp results)")


def make_proof(store: BlobStore, workload: Workload, rid: int) -> IssuedProof:
    """The self-contained proof of record ``rid`` (see the module's docstring)."""
    summary = generation_summary(store, workload)
    att = attestation_of(summary, workload.id)
    if att.round != summary.sealed_round:
        raise IntegrityError(
            f"the results root of workload {workload.id} is round {att.round} but its summary is round "
            f"{summary.sealed_round}: a root replayed from another round; re-run 'rqp-scheduler run {workload.id}'"
        )
    if not 0 <= rid < att.size:
        raise WorkloadError(f"workload {workload.id} has records 0-{att.size - 1}, not {rid}")
    counts = {LEAVES_BLOB: 0, INPUTS_BLOB: 0}

    def counted(name: str) -> Iterator[bytes]:
        for h in _hashes(store, workload, name):
            counts[name] += 1
            yield h

    try:
        leaf, path = audit_path(counted(LEAVES_BLOB), rid, att.size)
    except ValueError:
        leaf, path = b"", []
    inputs = counted(INPUTS_BLOB)
    mac = next(itertools.islice(inputs, rid, None), b"")
    for _ in inputs:  # counted to the end: an extra or missing digest is named
        pass
    _check_counts(workload.id, counts, att.size)
    if root_from_path(leaf, rid, att.size, path) != att.root:
        raise IntegrityError(
            f"{LEAVES_BLOB} of workload {workload.id} does not fold into its signed root: altered in the blob store, "
            f"so no proof can be issued; re-run 'rqp-scheduler run {workload.id}'"
        )
    record = _record_value(store, workload, rid, {f.id: f for f in summary.failures})
    record["input"] = "" if mac == b"\x00" * 32 else mac.hex()
    # leaves.bin folds into the signed root, but inputs.bin and the results do not: recompute the
    # record's leaf from its parts, so a swapped input digest or result is refused here, not at
    # the consumer's verify-proof
    if record_leaf(record, mac) != leaf:
        raise IntegrityError(
            f"record {rid} of workload {workload.id} does not hash to its leaf in {LEAVES_BLOB}: {INPUTS_BLOB} or "
            f"the results blob was altered in the blob store, so no proof can be issued; 'rqp verify "
            f"{workload.id}' names the records that differ"
        )
    return proof_doc(att, record, leaf, path)


def proof_doc(att: Attestation, record: dict[str, Any], leaf: bytes, path: list[bytes]) -> IssuedProof:
    """A proof as JSON: ``record`` (id, key, kind, value, input), its leaf and audit path, and the
    signed statement with its signature and the signer's public key."""
    return IssuedProof(
        {
            "format": PROOF_FORMAT,
            "workload": att.statement["workload"],
            # shown for reading; what vouches for it is the signed statement's round (a proof is
            # about that round only: an earlier round's proof still checks offline)
            "round": att.round,
            "record": record,
            "leaf": leaf.hex(),
            "index": record["id"],
            "path": base64.b64encode(b"".join(path)).decode(),
            **att.to_dict(),
        }
    )
