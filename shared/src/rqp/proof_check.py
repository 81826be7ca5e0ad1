"""Checking one record's proof (``rqp.verification.make_proof``) with only the trusted public key
-- as strictly as the README's plain-Python check: the proof is refused unless every field is
there with exactly its type and form (ints that are not booleans, lowercase hex of its length,
canonical base64, no field rqp does not write), so two "official" checkers never disagree on
what a valid proof is, and what ``rqp verify-proof`` prints is what the proof holds.

What a proof vouches for offline is the workload, record and round its signed statement names;
a consumer who expects a particular one passes it (``expect``) and anything else is refused,
so a genuine proof of another workload, record or an earlier round cannot be replayed.
"""

from __future__ import annotations

import base64
import hashlib
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization

from .errors import ConfigError, IntegrityError
from .jsonsafe import JSONRejected, loads, noncanonical_number
from .merkle import HASH_SIZE, leaf_hash, root_from_path
from .pem import fingerprint
from .results_root import (
    FAILED,
    NOT_RUN,
    RESULT,
    STATEMENT_VERSION,
    UNREADABLE,
    Attestation,
    canonical,
    leaf_bytes,
    text_bytes,
)
from .signing import ED25519, ES256

__all__ = ["PROOF_FIELDS", "PROOF_FORMAT", "Expected", "IssuedProof", "ParsedProofWarning", "check_proof", "read_proof"]

PROOF_FORMAT = "rqp-proof/1"
#: the fields a proof has, no more (``rqp.verification.proof_doc``)
PROOF_FIELDS = frozenset({"format", "workload", "round", "record", "leaf", "index", "path", "statement", "signature", "public_key"})  # fmt: skip
_RECORD_FIELDS = frozenset({"id", "key", "kind", "value", "input"})
_STATEMENT_FIELDS = frozenset({"v", "workload", "round", "root", "size", "manifest", "data_sha256", "script_sha256", "unique_keys"})  # fmt: skip
_SIGNATURE_FIELDS = frozenset({"alg", "signer", "value"})
_KINDS = frozenset({RESULT, UNREADABLE, FAILED, NOT_RUN})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NO_INPUT = b"\x00" * HASH_SIZE


class IssuedProof(dict[str, Any]):
    """A proof as rqp made it in this process (``rqp.verification.make_proof``, so
    ``Workload.proof()``): never written as text, so no number in it can have been written
    otherwise than rqp writes it -- ``check_proof`` takes it without ``ParsedProofWarning``."""


class ParsedProofWarning(UserWarning):
    """``check_proof`` was given a proof already parsed (``json.load``): how its numbers were
    written is lost (``0.10000000000000001`` and ``1e-1`` both read as ``0.1``), so the number rule
    of ``read_proof`` cannot apply. Pass the file's bytes instead."""


@dataclass(frozen=True)
class Expected:
    """What the consumer asked for (each None: not checked): the proof must be of this workload,
    this record (by id or by the data's own key), this round and this manifest."""

    workload: str | None = None
    record: int | None = None
    key: str | None = None
    round: int | None = None
    #: the signed manifest's digest (``rqp verify W`` prints the current one): a proof of a
    #: superseded generation (``rqp pack --replace``, whose rounds start at 1 again) or of another
    #: deployment's workload of the same id is over another manifest
    manifest: str | None = None


def _malformed(what: str) -> IntegrityError:
    return IntegrityError(f"the proof is not an rqp proof ({what}); give the file 'rqp proof' wrote, unedited")


def _int(doc: dict[str, Any], name: str, where: str, low: int) -> int:
    v = doc.get(name)
    if type(v) is not int or v < low:
        raise _malformed(f"{where}{name} must be an integer of at least {low}")
    return v


def _hex64(v: Any, what: str) -> str:
    if not isinstance(v, str) or not _HEX64.fullmatch(v):
        raise _malformed(f"{what} must be 64 lowercase hex digits")
    return v


def _fields(doc: Any, allowed: frozenset[str], required: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise _malformed(f"{what} must be an object")
    extra, missing = sorted(set(doc) - allowed), sorted(required - set(doc))
    if extra or missing:
        raise _malformed(f"{what} " + (f"has fields rqp does not write: {extra}" if extra else f"lacks {missing}"))
    return doc


def _canonical_b64(value: Any, what: str) -> bytes:
    """``value``'s bytes when it is base64 exactly as rqp writes it (alphabet only, padded, zero
    pad bits) -- what the README's check takes, so the two agree -- else ``IntegrityError`` saying ``what``."""
    try:
        raw = base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or base64.b64encode(raw).decode() != value:
        raise _malformed(what)
    return raw


def _parse(doc: Any) -> tuple[Attestation, dict[str, Any], bytes, list[bytes]]:
    """(attestation, record, input digest, path) of a proof of exactly rqp's form, else ``IntegrityError``."""
    doc = _fields(doc, PROOF_FIELDS, PROOF_FIELDS, "the proof")
    if doc["format"] != PROOF_FORMAT:
        raise _malformed(f"format must be {PROOF_FORMAT!r}")
    st = _fields(doc["statement"], _STATEMENT_FIELDS, _STATEMENT_FIELDS - {"round", "unique_keys"}, "its statement")
    rec = _fields(doc["record"], _RECORD_FIELDS, _RECORD_FIELDS, "its record")
    sig = _fields(doc["signature"], _SIGNATURE_FIELDS, _SIGNATURE_FIELDS, "its signature")
    if not isinstance(doc["workload"], str) or st["workload"] != doc["workload"]:
        raise _malformed("workload must be the statement's workload, text")
    if st["v"] not in (1, STATEMENT_VERSION) or type(st["v"]) is not int:
        raise _malformed(f"the statement's v must be 1 or {STATEMENT_VERSION}")
    if ("unique_keys" in st) != (st["v"] == STATEMENT_VERSION) or type(st.get("unique_keys", False)) is not bool:
        raise _malformed(f"the statement's unique_keys must be true or false in v{STATEMENT_VERSION}, absent in v1")
    for name in ("manifest", "data_sha256", "script_sha256"):
        if not isinstance(st[name], str):
            raise _malformed(f"the statement's {name} must be text")
    _hex64(st["root"], "the statement's root")
    size = _int(st, "size", "the statement's ", 1)
    round_ = _int(st, "round", "the statement's ", 1) if "round" in st else None
    if _int(doc, "round", "", 1) != (round_ if round_ is not None else doc["round"]):
        raise IntegrityError(f"the proof says round {doc['round']} but its signed statement is round {round_}: edited")
    rid = _int(rec, "id", "its record's ", 0)
    if _int(doc, "index", "", 0) != rid or rid >= size:
        raise _malformed(f"index must be its record's id and below the statement's size {size}")
    if not (rec["key"] is None or isinstance(rec["key"], str)):
        raise _malformed("its record's key must be text or null")
    if rec["kind"] not in _KINDS:
        raise _malformed(f"its record's kind must be one of {sorted(_KINDS)}")
    if rec["kind"] != RESULT and not isinstance(rec["value"], str):
        raise _malformed(f"a {rec['kind']} record's value must be text")
    mac = _NO_INPUT if rec["input"] == "" else bytes.fromhex(_hex64(rec["input"], "its record's input"))
    if rec["input"] and mac == _NO_INPUT:
        raise _malformed('its record\'s input is all zeros, which rqp writes as ""')
    _hex64(doc["leaf"], "its leaf")
    if sig["alg"] not in (ED25519, ES256) or not all(isinstance(sig[k], str) for k in _SIGNATURE_FIELDS):
        raise _malformed(f"its signature's alg must be {ED25519} or {ES256}")
    if not isinstance(doc["public_key"], str):
        raise _malformed("public_key must be text")
    # an edited signature is the proof's fault, not the workload's: named here, before the shared
    # signature reader (whose advice, re-pack, is for a manifest) sees it
    _canonical_b64(sig["value"], "its signature's value must be canonical base64")
    raw = _canonical_b64(doc["path"], f"path must be canonical base64 of {HASH_SIZE}-byte hashes")
    if len(raw) % HASH_SIZE:
        raise _malformed(f"path must be canonical base64 of {HASH_SIZE}-byte hashes")
    att = Attestation.from_dict(doc, doc["workload"])
    return att, rec, mac, [raw[i : i + HASH_SIZE] for i in range(0, len(raw), HASH_SIZE)]


def _check_expected(att: Attestation, rec: dict[str, Any], expect: Expected) -> None:
    wid, what = att.statement["workload"], f"record {rec['id']} of workload {att.statement['workload']}"
    if expect.workload is not None and wid != expect.workload:
        raise IntegrityError(f"the proof is of workload {wid}, not {expect.workload}: another workload's proof")
    if expect.record is not None and rec["id"] != expect.record:
        raise IntegrityError(f"the proof is of {what}, not record {expect.record}: another record's proof")
    if expect.key is not None and not att.unique_keys:
        raise IntegrityError(
            f"--key cannot be checked for workload {wid}: its signed statement does not say its keys are unique "
            f"(two records may share key {expect.key!r}, or a record with no key recorded may); ask by record id "
            f"with --record"
        )
    if expect.key is not None and rec["key"] != expect.key:
        raise IntegrityError(f"the proof is of {what} with key {rec['key']!r}, not key {expect.key!r}")
    if expect.round is not None and att.round != expect.round:
        raise IntegrityError(
            f"the proof is of round {att.round} of workload {wid}, not round {expect.round}: "
            f"another round's proof ('rqp verify {wid}' names the current round)"
        )
    if expect.manifest is not None and att.statement.get("manifest") != expect.manifest:
        raise IntegrityError(
            f"the proof of workload {wid} is over manifest {att.statement.get('manifest')}, not {expect.manifest}: "
            f"another version's proof (a superseded generation, rqp pack --replace, or another deployment's); "
            f"'rqp verify {wid}' names the current manifest"
        )


def _public_fingerprint(pem: str) -> str:
    """The fingerprint of the PEM key a proof carries, ``""`` when it is not one."""
    try:
        return fingerprint(serialization.load_pem_public_key(pem.encode()))
    except (ValueError, UnicodeError, TypeError):
        return ""


def record_leaf(rec: dict[str, Any], mac: bytes) -> bytes:
    """The leaf hash of a proof's record (id, key, kind, value) with input digest ``mac`` -- what
    ``check_proof`` compares with the proof's leaf and ``make_proof`` with ``leaves.bin`` before
    issuing one. ``IntegrityError`` when the value is not strict JSON."""
    rid, kind, value = rec["id"], rec["kind"], rec["value"]
    try:
        data = canonical(value) if kind == RESULT else text_bytes(value)
    except (ValueError, TypeError, RecursionError):
        raise _malformed(f"record {rid}'s value is not strict JSON") from None
    return leaf_hash(leaf_bytes(rid, rec["key"], mac, kind, hashlib.sha256(data).hexdigest()))


def read_proof(text: bytes | str, name: str = "the proof") -> Any:
    """A proof file's JSON, read as strictly as ``rqp proof`` writes it: strict JSON (no NaN,
    nesting bounded, UTF-8 only) whose every number is written as rqp writes it -- a value's
    digest is of its parsed form, so ``0.10000000000000001`` or ``1e-1`` for ``0.1`` would check,
    while a Decimal or jsonb reader of the file sees another number. ``IntegrityError`` naming
    ``name`` otherwise. The rule lives here only: ``rqp verify-proof`` and ``check_proof`` use it."""
    try:
        doc = loads(text)
    except JSONRejected as exc:
        raise IntegrityError(f"{name} is not strict JSON ({exc}); give the file 'rqp proof' wrote") from None
    other = noncanonical_number(text)
    if other is not None:
        raise IntegrityError(
            f"{name} writes the number {other[0][:40]} where rqp writes {other[1][:40]}: edited; "
            f"give the file 'rqp proof' wrote"
        )
    return doc


def check_proof(
    proof: bytes | str | Mapping[str, Any], public_pem: bytes, expect: Expected = Expected(), *, name: str = "the proof"
) -> str:
    """Check a proof with only the trusted public key: it has exactly rqp's form, it is of what
    ``expect`` names, the value digests into the leaf, the leaf and path lead to the root, and
    ``public_pem``'s key signed that root for that workload and round. The signer's fingerprint;
    ``IntegrityError`` saying what does not hold. Offline, the workload's current round is
    unknown: the proof vouches for the round its statement names, which the caller shows.

    The proof's ``public_key`` must be that trusted key and its ``signature.signer`` that key's
    fingerprint: a viewer shows them as who signed, so neither may name another key.

    ``proof``: the file's bytes as received -- read by ``read_proof``, so a number written
    otherwise than rqp writes it is refused, as ``rqp verify-proof`` refuses it -- or a proof
    already in hand as a dict: ``Workload.proof()``'s (an ``IssuedProof``: nothing was written,
    so nothing to misread), or any other parsed dict, which is checked but with a
    ``ParsedProofWarning``: how its numbers were written is lost, so that rule cannot apply."""
    if isinstance(proof, (bytes, str)):
        doc = read_proof(proof, name)
    else:
        if not isinstance(proof, IssuedProof):
            warnings.warn(
                f"check_proof was given {name} already parsed: how its numbers were written is lost (json.load reads "
                f"0.10000000000000001 as 0.1), so that rule is not applied; pass the file's bytes",
                ParsedProofWarning,
                stacklevel=2,
            )
        doc = proof
    att, rec, mac, path = _parse(doc)
    try:
        key = serialization.load_pem_public_key(public_pem)
    except ValueError:
        raise ConfigError("--signer is not a PEM public key; give the scheduler's results .pub.pem") from None
    fp = fingerprint(key)
    if att.signature is None or att.signature.signer != fp:
        raise IntegrityError(
            f"the proof's root is signed by {att.signature.signer if att.signature else 'no one'}, not by the "
            f"trusted key {fp}"
        )
    if _public_fingerprint(doc["public_key"]) != fp:
        # the key the proof carries is what a viewer shows as "signed by": it must be the one trusted
        raise IntegrityError(
            f"the proof carries the public key {_public_fingerprint(doc['public_key']) or 'that does not load'}, "
            f"not the trusted key {fp} that signed it: edited; give the file 'rqp proof' wrote"
        )
    wid = att.statement["workload"]
    Attestation(att.statement, att.signature, public_pem.decode()).check(None, None, wid)
    _check_expected(att, rec, expect)
    rid = rec["id"]
    leaf = record_leaf(rec, mac)
    if leaf.hex() != doc["leaf"]:
        raise IntegrityError(f"record {rid} of the proof does not hash to its leaf: its value, key or input changed")
    if root_from_path(leaf, rid, att.size, path) != att.root:
        raise IntegrityError(f"record {rid}'s path does not lead to the signed root of workload {wid}")
    return fp
