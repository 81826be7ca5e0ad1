"""A finished workload's results root: one Merkle leaf per record, the root signed by the fleet.

Each record ``0..n-1`` the scheduler read has one leaf (``rqp.merkle``), in record order::

    leaf bytes = b"rqp-leaf/1" + JSON [id, key, input, kind, digest]   (compact, ASCII)

* ``id``: the record's number; ``key``: the data's own id with ``rqp pack --id-field``, else null;
* ``input``: HMAC-SHA256 of the record's id (8 bytes, big-endian) then its bytes as the
  scheduler parsed them, keyed with ``HKDF-SHA256(data key, info="rqp-input-digest/2|W")``
  (``input_digest``) -- a plain digest would let anyone holding a proof guess a low-entropy
  record (a yes/no, a birth date) by hashing candidates, and one not bound to the record would
  tell which records had equal inputs (``/1``, before: ``inputs.bin`` showed the yes/no split);
  the key lives only where the workload's data key does. Hex. The scheduler computes them as
  its enqueue reads the records (``rqp_scheduler.input_pieces``), and reads the data again at
  the end only when that run's digests do not cover every record (a restart, a ``rqp retry``
  round). A ``--format script`` workload's records are what its ``parse()`` yields (run again
  in a script host at the end in that case); ``""`` only where neither was available
  (``consolidate`` called on its own);
* ``kind`` and ``digest``: ``result`` and SHA-256 of the result as canonical JSON (sorted keys,
  no spaces, UTF-8), so JSON Lines, CSV and Parquet exports digest alike; ``error`` (a result that
  was not strict JSON) and SHA-256 of the line ``rqp results`` prints instead; ``failed`` and
  SHA-256 of the failure reason; ``not-run`` (cancelled) and SHA-256 of nothing. Text is UTF-8
  with a lone surrogate (no UTF-8 form) written as its JSON escape ``\\udXXX``
  (``text_bytes``, Python's ``encode("utf-8", "backslashreplace")``): processors fail such a
  result per record, and no value that reaches the root anyway can fail the workload's
  consolidation.

The **statement** signed is ``b"rqp-results-root/1\\n"`` + canonical JSON of the workload id,
the root, the number of leaves, the signed manifest's digests (its content digest, the data's
and the script's SHA-256) and the **round** it ends (1, then one more per ``rqp retry
--failed``), so a root replayed onto another workload, or over other data or another script,
does not verify, and a root of an earlier round is told apart from the current one (readers
compare it with the workload's sealed head: ``rqp.summary.check_round``; a proof checked
offline vouches for the round it names only). It is signed by the scheduler's own results key
(``RQP_RESULTS_KEY_FILE``), else by the operator key it is configured with
(``RQP_OPERATOR_KEY_FILE`` or ``RQP_OPERATOR_KEY_VAULT_ID``): never a key a processor holds, nor
the submitter's. Without one the root is stored unsigned and ``rqp verify`` says so. Readers
trust the keys in ``RQP_TRUSTED_RESULTS_KEYS_FILE`` (else the trusted operators), or the one
public key they are given (``--signer``).

Beside the results go ``leaves.bin`` (the leaf hashes, 32 bytes each: proofs need them) and
``inputs.bin`` (the input HMACs, 32 bytes each: checking an export needs them). Neither is
trusted: a leaf hash that was changed changes the root, an input HMAC that was changed changes
its record's leaf, and both are named when checked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import json.encoder
import json.scanner
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .crypto import KEY_SIZE, aad, decrypt_stream
from .errors import IntegrityError, StorageError
from .jsonsafe import MAX_JSON_DEPTH, ROW_MEMBERS, JSONRejected, loads, result_line
from .merkle import HASH_SIZE, LEAF_PREFIX, TreeBuilder, iter_hashes
from .sandbox._jsonsafe import _DECODER as _STRICT
from .signing import Signature, SigningKey, TrustStore, signature_verifies
from .storage import BlobStore
from .summary import UNRECORDED_ROUND, Failure
from .workload import Workload, blob_name

__all__ = [
    "FAILED",
    "INPUTS_BLOB",
    "LEAVES_BLOB",
    "NOT_RUN",
    "RESULT",
    "STAGED_SUFFIX",
    "STATEMENT_DOMAIN",
    "STATEMENT_VERSION",
    "UNREADABLE",
    "Attestation",
    "EndedRound",
    "KeysSeen",
    "build_root",
    "canonical",
    "input_digest",
    "input_digests",
    "input_key",
    "leaf_bytes",
    "row_leaf",
    "staged_suffix",
    "text_bytes",
]

LEAVES_BLOB = "leaves.bin"
INPUTS_BLOB = "inputs.bin"
#: what a blob being written for a summary not yet sealed is named meanwhile (``results.enc``
#: + this): swapped in under its own name only once every check passed
STAGED_SUFFIX = ".staged"


def staged_suffix(staged: bool | str) -> str:
    """The suffix of staged names: none (False), ``STAGED_SUFFIX`` (True), or one of its own -- a
    consolidation names its staged blobs after its run's lock generation, so a scheduler paused
    past its lock and woken while another consolidates never writes, moves or deletes the other's
    (the thirteenth review, F5)."""
    if isinstance(staged, str):
        return staged
    return STAGED_SUFFIX if staged else ""


STATEMENT_DOMAIN = b"rqp-results-root/1\n"
#: the signed statement's ``v``: 2 adds ``unique_keys`` (whether no two records share a key, so a
#: key names one record); a v1 statement lacks it, and ``--key`` then cannot be proven
STATEMENT_VERSION = 2
LEAF_DOMAIN = b"rqp-leaf/1"
INPUT_KEY_INFO = b"rqp-input-digest/2|"
RESULT, UNREADABLE, FAILED, NOT_RUN = "result", "error", "failed", "not-run"
_NO_INPUT = b"\x00" * HASH_SIZE
#: leaf hashes or input digests written per piece
_PIECE = 4096
#: SHA-256's block size (bytes): HMAC pads its key to it
_SHA256_BLOCK = 64


#: ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``
#: built once: ``json.dumps`` with any non-default option builds a new encoder per call
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _tree_encoder() -> Callable[[Any], str]:
    """``_CANONICAL.encode`` for values ``json`` just parsed (trees: no cycles to look for), with
    the C encoder built once instead of once per call -- half the cost of a result's digest. The
    C encoder is CPython's (``json.encoder.c_make_encoder``); where it is missing, or does not
    give ``_CANONICAL``'s bytes for a sample, ``_CANONICAL.encode`` is used as it is."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _CANONICAL.encode
    try:
        c = make(None, _CANONICAL.default, json.encoder.encode_basestring, None, ":", ",", True, False, False)
        sample = {"b": [1, 2.5, -0.0, None, True], "a": "\u00e9\u2028\n", "c": {"z": 1e300, "y": "x"}}
        if "".join(c(sample, 0)) != _CANONICAL.encode(sample):
            return _CANONICAL.encode
    except (TypeError, ValueError):  # another signature than CPython 3.11-3.13's
        return _CANONICAL.encode
    return lambda value: "".join(c(value, 0))


_encode_tree = _tree_encoder()


def text_bytes(text: str) -> bytes:
    """``text`` as UTF-8, a lone surrogate (which UTF-8 has no form for) written as its JSON
    escape ``\\udXXX`` instead of failing: one bad character in one record must never make the
    workload's root unbuildable (a str holds no other character that UTF-8 cannot encode)."""
    return text.encode("utf-8", "backslashreplace")


def canonical(value: Any) -> bytes:
    """A JSON value as one byte string whatever wrote it: sorted keys, no spaces, UTF-8, a lone
    surrogate as its JSON escape (``text_bytes``: still the same JSON value, read back)."""
    return text_bytes(_CANONICAL.encode(value))


def input_key(data_key: bytes, workload_id: str) -> bytes:
    """The HMAC key of the input digests: derived from the workload's data key, never the data key."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=INPUT_KEY_INFO + workload_id.encode()
    ).derive(data_key)


def input_digest(k: bytes, rid: int, payload: bytes) -> bytes:
    """A record's input digest: HMAC-SHA256 under ``input_key`` of its id (8 bytes, big-endian)
    then its bytes -- bound to the record, so two records with equal inputs get unrelated digests
    (a blob-store reader of ``inputs.bin`` or a holder of two proofs must not learn which inputs
    were equal). The key needs no binding of its own: it is read from the input, and the leaf
    holds it beside the digest."""
    return hmac.digest(k, rid.to_bytes(8, "big") + payload, "sha256")


def leaf_bytes(rid: int, key: str | None, input_mac: bytes, kind: str, digest: str) -> bytes:
    """What a record's leaf hashes (see the module's docstring): the bytes of
    ``json.dumps([rid, key, input, kind, digest], separators=(",", ":"))``, formatted directly
    (every part but the key is ASCII digits, hex or a fixed word)."""
    inp = "" if input_mac == _NO_INPUT else input_mac.hex()
    k = "null" if key is None else json.dumps(key)
    return b'%s[%d,%s,"%s","%s","%s"]' % (LEAF_DOMAIN, rid, k.encode(), inp.encode(), kind.encode(), digest.encode())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def row_leaf(doc: dict[str, Any]) -> tuple[str, str]:
    """(kind, digest) of a results row as ``rqp results`` shows it: ``{"id", "result"}`` or
    ``{"id", "error"}`` (a result that was not strict JSON)."""
    if "result" in doc:
        return RESULT, _sha(canonical(doc["result"]))
    return UNREADABLE, _sha(text_bytes(str(doc.get("error", ""))))


def failed_leaf(reason: str | None) -> tuple[str, str]:
    return FAILED, _sha(text_bytes(reason or ""))


def not_run_leaf() -> tuple[str, str]:
    return NOT_RUN, _sha(b"")


def parse_result_line(line: bytes) -> dict[str, Any]:
    """A stored results line as ``rqp results`` prints it (``rqp.jsonsafe.result_line``), parsed:
    the line itself when it is strict JSON with an id (parsed once), else rqp's rewrite of it.
    ``IntegrityError`` when it has members rqp never writes: its leaf covers only the id, the key
    and the result, so an added ``"error"`` (say) would be shown by ``rqp results`` and pass every
    check (ninth review, G3: a processor's result bytes ``1,"error":"..."`` made such a line)."""
    try:
        doc = loads(line)
    except JSONRejected:
        doc = None
    if not (isinstance(doc, dict) and "id" in doc):
        doc = loads(result_line(line))
    if not isinstance(doc, dict):  # pragma: no cover - result_line always returns an object
        raise IntegrityError("a results line is not an object after rqp's own rewrite; re-run the workload")
    if frozenset(doc) not in ROW_MEMBERS:
        extra = ", ".join(sorted(set(doc) - {"id", "key", "result"})) or "a result and an error"
        raise IntegrityError(
            f"the results line of record {str(doc.get('id'))[:20]} has members rqp never writes ({extra[:80]}): "
            "changed behind rqp's back, or a processor's result bytes were not one JSON value; put back the "
            "results from a backup, or run the workload again"
        )
    return doc


@dataclass(frozen=True)
class Attestation:
    """The signed statement about a workload's results: what is in the summary and in a proof."""

    statement: dict[str, Any]
    signature: Signature | None
    public_pem: str

    @property
    def root(self) -> bytes:
        return bytes.fromhex(str(self.statement["root"]))

    @property
    def size(self) -> int:
        return int(self.statement["size"])

    @property
    def round(self) -> int:
        """The round the statement is about (``UNRECORDED_ROUND`` in statements from before it was
        signed into them)."""
        return int(self.statement.get("round") or UNRECORDED_ROUND)

    @property
    def unique_keys(self) -> bool:
        """Whether the signed statement says no two records share a key (False for a v1
        statement, which does not say: a key cannot be proven to name one record)."""
        return self.statement.get("unique_keys") is True

    def message(self) -> bytes:
        return STATEMENT_DOMAIN + canonical(self.statement)

    def to_dict(self) -> dict[str, Any]:
        return {
            "statement": self.statement,
            "signature": None if self.signature is None else self.signature.to_dict(),
            "public_key": self.public_pem,
        }

    @classmethod
    def from_dict(cls, doc: Any, workload_id: str) -> Attestation:
        try:
            sig = doc.get("signature")
            statement = dict(doc["statement"])
            bytes.fromhex(str(statement["root"]))
            int(statement["size"])
            int(statement.get("round") or UNRECORDED_ROUND)
            return cls(
                statement,
                None if sig is None else Signature.from_dict(sig, workload_id),
                str(doc.get("public_key") or ""),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise IntegrityError(
                f"the results root of workload {workload_id} is malformed: tampered with; "
                f"re-run 'rqp-scheduler run {workload_id}'"
            ) from None

    def check(
        self, workload: Workload | None, trust: TrustStore | None, workload_id: str, round_: int | None = None
    ) -> str:
        """The signer's fingerprint when the statement is about ``workload`` (its id and manifest)
        and its round ``round_`` (when given: the summary's, itself checked against the sealed
        head), and signed by a key ``trust`` holds (``trust`` None: by the key the attestation
        carries, which the caller pinned); ``IntegrityError`` naming the workload or the key otherwise."""
        st = self.statement
        if st.get("workload") != workload_id:
            raise IntegrityError(
                f"the results root given for workload {workload_id} is workload {st.get('workload')!r}'s: "
                f"a root replayed from another workload; re-run 'rqp-scheduler run {workload_id}'"
            )
        if round_ is not None and self.round != round_:
            raise IntegrityError(
                f"the results root of workload {workload_id} is round {self.round} but its summary is round "
                f"{round_}: a root replayed from another round; re-run 'rqp-scheduler run {workload_id}'"
            )
        if workload is not None:
            m = workload.manifest
            want = {"manifest": m.content_digest(), "data_sha256": m.data.sha256, "script_sha256": m.script.sha256}
            for field, value in want.items():
                if st.get(field) != value:
                    raise IntegrityError(
                        f"the results root of workload {workload_id} is over another {field.split('_')[0]} than the "
                        f"signed workload's (a root replayed from another version); re-run the workload"
                    )
        if self.signature is None:
            raise IntegrityError(
                f"the results root of workload {workload_id} is not signed: its scheduler had no results key; "
                f"set RQP_RESULTS_KEY_FILE on the scheduler and run the workload again"
            )
        sig = self.signature
        if trust is not None:
            if sig.signer in trust.revoked:
                raise IntegrityError(
                    f"the results root of workload {workload_id} is signed by {sig.signer}, which is revoked ({trust.source})"
                )
            signer = trust.signers.get(sig.signer)
            if signer is None:
                raise IntegrityError(
                    f"the results root of workload {workload_id} is signed by {sig.signer}, which is not a trusted "
                    f"results key ({trust.source}); add the scheduler's results .pub.pem there, or pass --signer PUB"
                )
            key = signer.key
        else:
            key = _load_public(self.public_pem, workload_id)
        if not signature_verifies(key, sig, self.message()):
            raise IntegrityError(
                f"the results root of workload {workload_id} differs from what {sig.signer} signed: tampered with"
            )
        return sig.signer


def _load_public(pem: str, workload_id: str) -> Any:
    try:
        return serialization.load_pem_public_key(pem.encode())
    except ValueError:
        raise IntegrityError(f"the results root of workload {workload_id} carries no readable public key") from None


def _keyed_states(key: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256's keyed inner and outer SHA-256 states (RFC 2104: the key, padded to the
    64-byte block, XORed with 0x36 and 0x5c), to be copied per message."""
    if len(key) > _SHA256_BLOCK:  # RFC 2104: a longer key is hashed first (input keys are 32 bytes)
        key = hashlib.sha256(key).digest()
    block = key.ljust(_SHA256_BLOCK, b"\x00")
    return hashlib.sha256(bytes(b ^ 0x36 for b in block)), hashlib.sha256(bytes(b ^ 0x5C for b in block))


def _hmac_sha256(key: bytes) -> Callable[[bytes], bytes]:
    """``hmac.digest(key, msg, "sha256")`` with the keyed inner and outer SHA-256 states made once
    (``_keyed_states``), copied per message: the same bytes, about half the CPU of
    ``hmac.digest`` for a ~1 KB record, which sets them up again on every call."""
    inner, outer = _keyed_states(key)

    def digest(msg: bytes) -> bytes:
        i = inner.copy()
        i.update(msg)
        o = outer.copy()
        o.update(i.digest())
        return o.digest()

    return digest


def input_digests(workload: Workload) -> Callable[[int, Iterable[bytes]], bytes]:
    """``input_digest`` of records ``first, first+1, ...`` with the bytes given, concatenated, as
    one call per batch: the keyed states made once and the loop inline (no Python call per
    record) -- what the enqueue computes for every record it reads (``rqp_scheduler.input_pieces``)."""
    inner, outer = _keyed_states(input_key(workload.key, workload.id))

    def digests(first: int, payloads: Iterable[bytes]) -> bytes:
        out = []
        ic, oc = inner.copy, outer.copy
        for rid, payload in enumerate(payloads, first):
            i = ic()
            i.update(rid.to_bytes(8, "big"))
            i.update(payload)
            o = oc()
            o.update(i.digest())
            out.append(o.digest())
        return b"".join(out)

    return digests


#: ``records`` for a ``--format script`` workload whose records were not parsed for the root (no
#: script host at hand): its input digests are not computed, and its count is not checked
NOT_PARSED: tuple[bytes, ...] = ()


def _inputs(workload: Workload, records: Iterable[bytes], total: int, unread: int = 0) -> Iterator[bytes]:
    """The input digests of the first ``total`` records, in pieces. The data must hold exactly
    ``total`` + ``unread`` records (a cancel's unread ones have no leaf), except a ``--format
    script`` workload read without its script (``records`` is ``NOT_PARSED``: not digested): a
    head re-sealed with another total by a data-key holder got a record the data does not hold
    signed, or the records after a lowered total dropped from the root (ninth review, G2; a
    script workload whose records were parsed is counted too: tenth review, H2)."""
    counted = records is not NOT_PARSED
    digests = input_digests(workload)
    it = iter(records)
    n = 0
    while n < total:
        piece = digests(n, islice(it, min(_PIECE, total - n)))
        if not piece:
            break
        n += len(piece) // HASH_SIZE
        yield piece
    # read the data to its end even when the records asked for are all in hand: the data's
    # SHA-256 and size are checked against the signed manifest only after its last segment
    # (``Workload.data_chunks``), and a root over inputs read from data that fails that check
    # must never be signed (a data.enc of the same size re-sealed under the data key otherwise
    # slipped through here: sixth review, D5)
    extra = sum(1 for _ in it)
    if counted and (n < total or n + extra != total + unread):
        raise IntegrityError(
            f"workload {workload.id}: its sealed head says {total + unread} records, its signed data holds "
            f"{n + extra} (the head re-sealed behind rqp's back, by a holder of the data key with Redis access): "
            "nothing was signed; run the workload again under a new id"
        )
    if n < total:  # --format script: not digested
        yield _NO_INPUT * (total - n)


def _exactly(pieces: Iterable[bytes], total: int) -> Iterator[bytes]:
    """``pieces`` as they are, checked to hold exactly ``total`` digests (``IntegrityError``
    otherwise: a root over too few or too many inputs is never signed)."""
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > total * HASH_SIZE:
            break
        yield piece
    if size != total * HASH_SIZE:
        raise IntegrityError(
            f"the input digests given for the results root hold {size} bytes, not {total} digests; re-run the workload"
        )


_RESULT_MEMBERS = ROW_MEMBERS[:2]

#: a row of the results object as its leaf needs it: (id, key, kind, digest)
_Row = tuple[Any, Any, str, str]


def _row(line: bytes) -> _Row:
    """(id, key, kind, digest) of one stored results line: ``row_leaf(parse_result_line(line))``.
    The usual line -- UTF-8, too few brackets to nest too deep, strict JSON, an object with an id
    and a result -- goes through ``rqp.jsonsafe.loads``'s own steps inline; anything else (and any
    refusal) takes ``parse_result_line``, so every line's row is the same either way."""
    try:
        text = line.decode("utf-8")
        if text.count("[") + text.count("{") <= MAX_JSON_DEPTH and not text.startswith("\ufeff"):
            doc, end = _STRICT.raw_decode(text)  # no space around the value, or the full path
            if end == len(text) and type(doc) is dict and frozenset(doc) in _RESULT_MEMBERS:
                return doc["id"], doc.get("key"), RESULT, _sha(text_bytes(_encode_tree(doc["result"])))
    except ValueError:  # not UTF-8, not strict JSON, a refused number: the full path says why
        pass
    doc = parse_result_line(line)
    kind, digest = row_leaf(doc)
    return doc.get("id"), doc.get("key"), kind, digest


#: the frame ``consolidate`` writes around a result (``{"id":N,"result":R}``, no key): the id as
#: JSON writes an integer (no sign, no leading zero), then the result's name
_FRAME = re.compile(rb'\{"id":(0|[1-9][0-9]*),"result":')
#: json's scanner with no hooks: a value it reads is the strict parser's value whenever its
#: canonical encoding is the text it was read from (``_rows_of``)
_PLAIN_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # stubs name the class, it takes a decoder
#: a line of this many characters or fewer cannot nest deeper than ``MAX_JSON_DEPTH`` (its
#: brackets are not counted)
_SHALLOW = MAX_JSON_DEPTH


def _rows_of(lines: list[bytes]) -> list[_Row]:
    """``[_row(line) for line in lines]``, with the usual line's row made without the strict
    parser: a line ``{"id":N,"result":R}`` as consolidation frames it (the id an integer as JSON
    writes it), ``R`` read by json's scanner without hooks, and ``R`` already its own canonical
    JSON (``_encode_tree`` of the value gives ``R`` back). Then ``R`` holds no name twice (the
    canonical encoding of what was read names each once, so a text naming one twice differs from
    it), no NaN or infinity (the canonical encoder refuses them), and the strict parser reads the
    line into ``{"id": N, "result": value}`` -- so the row is ``(N, None, "result", SHA-256 of
    R's bytes)``, what ``_row`` gives, without a Python hook per object or a second encoding.
    Any other line -- whitespace, a key, another order of names, a result not canonical, a value
    that fails to read, more brackets than ``MAX_JSON_DEPTH`` -- is ``_row``'s."""
    out: list[_Row] = []
    add = out.append
    frame, scan, encode, sha = _FRAME.match, _PLAIN_SCAN, _encode_tree, hashlib.sha256
    for line in lines:
        m = frame(line)
        if m is not None and line[-1:] == b"}":
            p = m.end()
            try:
                text = line.decode("utf-8")
                if len(text) > _SHALLOW and text.count("[") + text.count("{") > MAX_JSON_DEPTH:
                    raise ValueError  # may nest too deep: the full path looks closer
                value, end = scan(text, p)
                same = end == len(text) - 1 and encode(value) == text[p:-1]
                rid = int(m.group(1))  # over Python's digit limit: ValueError, as json's
            except (ValueError, StopIteration, RecursionError):  # the full path says why
                same = False
            if same:
                add((rid, None, RESULT, sha(line[p:-1]).hexdigest()))
                continue
        add(_row(line))
    return out


class _Tally:
    """SHA-256 and size of the bytes that passed through ``feed``: what ``build_root`` wrote, and
    what it read back, compared before anything is signed."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0

    def feed(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self.sha.update(chunk)
            self.size += len(chunk)
            yield chunk

    def same(self, other: _Tally) -> bool:
        return self.size == other.size and hmac.compare_digest(self.sha.digest(), other.sha.digest())


def _result_rows(store: BlobStore, workload: Workload, blob: str, read: _Tally) -> Iterator[list[_Row]]:
    """The rows of the results object, one list per decrypted piece (its stored bytes through ``read``)."""
    rest = b""
    what = f"results of workload {workload.id}"
    for piece in decrypt_stream(workload.key, read.feed(store.iter_chunks(blob)), aad("results", workload.id), what):
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()
        yield _rows_of(lines)
    if rest:
        yield _rows_of([rest])


class KeysSeen:
    """Whether the records' keys (``rqp pack --id-field``) are unique in the workload, learnt as the
    leaves are built: the statement says so (``unique_keys``), so ``rqp proof --key`` and
    ``rqp verify-proof --key`` can refuse a key that names more than one record. Keys are kept as
    their ``hash()`` only (memory); a collision counts as a repeat, which only makes ``--key``
    refuse, never accept a wrong record.

    ``keyed`` (``--id-field``): a record that failed with no key recorded -- refused at enqueue,
    its key unreadable or the record malformed (``{"n": 1, "n": 2, "uid": "k3"}``) -- may share its
    key with another record, which a consumer asking for that key could then not be told of: the
    keys are not claimed unique (``unkeyed_failure``), so ``--key`` is refused, never answered
    with one of two records. A record that never ran (the workload cancelled first) counts the
    same: its key was never read."""

    def __init__(self, keyed: bool = False) -> None:
        self._seen: set[int] = set()
        self.unique = True
        self.keyed = keyed

    def unkeyed_failure(self) -> None:
        """A record with no key recorded (failed at enqueue, or never ran): in a keyed workload,
        uniqueness cannot be claimed."""
        if self.keyed:
            self.unique = False
            self._seen.clear()

    def add(self, key: Any) -> None:
        if key is None or not self.unique:
            return
        h = hash(str(key))
        if h in self._seen:
            self.unique = False
            self._seen.clear()
        else:
            self._seen.add(h)


def _leaves(
    inputs: Iterator[bytes],
    rows: Iterator[_Row],
    failures: list[Failure],
    total: int,
    tree: TreeBuilder,
    keys: KeysSeen,
) -> Iterator[bytes]:
    """Leaf hashes of records ``0..total-1`` in order, added to ``tree`` on the way, in pieces:
    ``leaf_hash(leaf_bytes(...))`` of each, formatted inline (one record is a few hashes; the
    Python calls around them were most of the results root's cost)."""
    by_id = {f.id: f for f in failures}
    row = next(rows, None)
    sha = hashlib.sha256
    # merkle.leaf_hash's prefix, then the leaf's bytes, formatted as text: every part is ASCII
    # (digits, hex, fixed words, and the key as json.dumps writes it), so one encode per leaf
    leaf = (LEAF_PREFIX + LEAF_DOMAIN).decode("ascii") + '[%d,%s,"%s","%s","%s"]'
    dumps = json.dumps
    buf: list[bytes] = []
    for rid, mac in enumerate(inputs):
        if rid >= total:
            break
        if row is not None and row[0] == rid:
            _, key, kind, digest = row
            row = next(rows, None)
        elif rid in by_id:
            f = by_id[rid]
            kind, digest = failed_leaf(f.error)
            key = f.key
            if key is None:
                keys.unkeyed_failure()
        else:
            kind, digest = not_run_leaf()
            key = None
            keys.unkeyed_failure()  # never ran (cancelled): its key is unknown, so may repeat another's
        if key is None:
            k = "null"
        else:
            keys.add(key)
            k = dumps(str(key))
        buf.append(sha((leaf % (rid, k, "" if mac == _NO_INPUT else mac.hex(), kind, digest)).encode()).digest())
        if len(buf) >= _PIECE:
            tree.extend(buf)
            yield b"".join(buf)
            buf = []
    if buf:
        tree.extend(buf)
        yield b"".join(buf)


def build_root(
    store: BlobStore,
    workload: Workload,
    records: Iterable[bytes],
    results_blob: str,
    failures: list[Failure],
    total: int,
    signer: SigningKey | None,
    *,
    round_: int = UNRECORDED_ROUND,
    staged: bool | str = False,
    inputs: Iterable[bytes] | None = None,
    unread: int = 0,
    results_sha256: str | None = None,
) -> Attestation:
    """Write ``inputs.bin`` then ``leaves.bin`` for records ``0..total-1`` (``records``: their
    payloads as parsed, in order; results from ``results_blob`` in record order; the rest failed
    or never ran), streaming; return the statement over their root and round ``round_``, signed
    when ``signer``. ``staged``: both are written under ``STAGED_SUFFIX`` names (or under this
    suffix: ``staged_suffix``), for the caller to move into place once the summary that vouches
    for them is ready. ``inputs``: the input
    digests of records ``0..total-1`` already computed (32 bytes each, concatenated, in pieces:
    the enqueue's, authenticated by the caller), instead of ``records``' -- ``records`` is then
    not read. ``unread``: records a cancel left unread (no leaf, their keys never seen): keys are
    then not claimed unique. ``results_sha256``: SHA-256 of the stored ``results_blob`` as its
    writer made it; the root is refused (``IntegrityError``) when the bytes read back differ."""
    suffix = staged_suffix(staged)
    inputs_name = blob_name(workload.id, INPUTS_BLOB) + suffix
    # the leaves are built from inputs.bin and the results object read back from the blob store,
    # streaming (no whole-workload buffer): what is read back must be byte for byte what was
    # written -- the input digests as this function wrote them, the results as their writer's
    # digest (``results_sha256``) says -- else a blob-store writer who rewrote one in between
    # (with the data key, any processor) would have a forged input or result signed
    wrote, read_inputs, read_results = _Tally(), _Tally(), _Tally()
    digests = _inputs(workload, records, total, unread) if inputs is None else _exactly(inputs, total)
    store.put_stream(inputs_name, wrote.feed(digests))
    tree = TreeBuilder()
    macs = iter_hashes(read_inputs.feed(store.iter_chunks(inputs_name)))
    rows = chain.from_iterable(_result_rows(store, workload, results_blob, read_results))
    keys = KeysSeen(workload.manifest.id_field is not None)
    if unread:
        keys.unkeyed_failure()
    store.put_stream(blob_name(workload.id, LEAVES_BLOB) + suffix, _leaves(macs, rows, failures, total, tree, keys))
    if not wrote.same(read_inputs):
        raise IntegrityError(
            f"workload {workload.id}: {inputs_name} changed between its write and its read for the results root "
            "(another writer in the blob store); nothing was signed: check who can write to the blob store"
        )
    if results_sha256 is not None and read_results.sha.hexdigest() != results_sha256:
        raise IntegrityError(
            f"workload {workload.id}: {results_blob} is not the results object consolidation wrote (another writer "
            "in the blob store); nothing was signed: check who can write to the blob store"
        )
    return _attest(workload, round_, tree, keys, signer)


def _attest(
    workload: Workload, round_: int, tree: TreeBuilder, keys: KeysSeen, signer: SigningKey | None
) -> Attestation:
    """The statement over ``tree``'s root, signed when ``signer``."""
    m = workload.manifest
    statement = {
        "v": STATEMENT_VERSION,
        "workload": workload.id,
        "round": round_,
        "root": tree.root().hex(),
        "size": tree.size,
        "manifest": m.content_digest(),
        "data_sha256": m.data.sha256,
        "script_sha256": m.script.sha256,
        "unique_keys": keys.unique,
    }
    att = Attestation(statement, None, "")
    if signer is None:
        return att
    return Attestation(statement, signer.signature(att.message()), signer.public_pem().decode())


class _LeafMaker:
    """``_leaves`` pushed instead of pulled: rows are handed in as consolidation makes them
    (``feed``), the records between them and after the last (``finish``) get their failed or
    never-run leaves, each leaf exactly as ``_leaves`` makes it for the same rows, inputs and
    failures (``tests/shared/test_results_root_one_pass.py`` holds the two to the same root).
    A row that no record takes -- an id out of order, repeated, beyond the last record or not an
    id -- is counted in ``unmatched``: the one pass refuses such a results stream (the read-back
    left it to the stream's digest, which such a row made differ in practice)."""

    def __init__(
        self, macs: Iterator[bytes], failures: list[Failure], total: int, tree: TreeBuilder, keys: KeysSeen
    ) -> None:
        self._macs = macs
        self._by_id = {f.id: f for f in failures}
        self._total = total
        self._tree = tree
        self._keys = keys
        self._rid = 0
        self.unmatched = 0
        self._leaf = (LEAF_PREFIX + LEAF_DOMAIN).decode("ascii") + '[%d,%s,"%s","%s","%s"]'

    def _other(self, rid: int, mac: bytes, out: list[bytes]) -> None:
        """The leaf of record ``rid``, which has no result: failed (its reason), or never ran."""
        f = self._by_id.get(rid)
        if f is not None:
            kind, digest = failed_leaf(f.error)
            key = f.key
            if key is None:
                self._keys.unkeyed_failure()
        else:
            kind, digest = not_run_leaf()
            key = None
            self._keys.unkeyed_failure()  # never ran (cancelled): its key is unknown, so may repeat another's
        if key is None:
            k = "null"
        else:
            self._keys.add(key)
            k = json.dumps(str(key))
        out.append(
            hashlib.sha256(
                (self._leaf % (rid, k, "" if mac == _NO_INPUT else mac.hex(), kind, digest)).encode()
            ).digest()
        )

    def feed(self, rows: list[_Row]) -> bytes:
        """The leaf hashes of the records up to the last of ``rows`` (added to the tree), concatenated."""
        out: list[bytes] = []
        add = out.append
        sha, leaf, dumps, keys, macs, total = (
            hashlib.sha256,
            self._leaf,
            json.dumps,
            self._keys,
            self._macs,
            self._total,
        )
        rid = self._rid
        for row in rows:
            taken = False
            while rid < total:
                mac = next(macs, None)
                if mac is None:  # inputs.bin read back short: its tally differs, refused in ``finish``
                    rid = total
                    break
                if row[0] == rid:
                    _, key, kind, digest = row
                    if key is None:
                        k = "null"
                    else:
                        keys.add(key)
                        k = dumps(str(key))
                    add(sha((leaf % (rid, k, "" if mac == _NO_INPUT else mac.hex(), kind, digest)).encode()).digest())
                    rid += 1
                    taken = True
                    break
                self._other(rid, mac, out)
                rid += 1
            if not taken:
                self.unmatched += 1
        self._rid = rid
        if out:
            self._tree.extend(out)
        return b"".join(out)

    def finish(self) -> bytes:
        """The leaf hashes of the records after the last row (failed or never ran), concatenated."""
        out: list[bytes] = []
        while self._rid < self._total:
            mac = next(self._macs, None)
            if mac is None:
                break
            self._other(self._rid, mac, out)
            self._rid += 1
        self._rid = self._total
        if out:
            self._tree.extend(out)
        return b"".join(out)


#: pieces of leaf hashes waiting for ``_Pipe``'s writer thread at most
_PIPE_DEPTH = 8
#: how long ``_Pipe`` waits for room before looking whether its writer is still alive (seconds)
_PIPE_POLL = 0.5
_END, _ABORT = object(), object()


class _Aborted(Exception):
    """Raised inside a ``_Pipe``'s stream when its feeder gives up: the blob is not completed."""


class _Pipe:
    """One blob written by ``BlobStore.put_stream`` on a thread of its own, fed piece by piece from
    the caller's: ``put_stream`` pulls from an iterator, so two blobs written in one pass (the
    results object and the leaf hashes beside it) need one writer each. Bounded: at most
    ``_PIPE_DEPTH`` pieces wait. The writer's error (a store that is down) is raised in the
    feeder at its next ``send`` or at ``close``."""

    def __init__(self, store: BlobStore, name: str) -> None:
        self._q: queue.Queue[object] = queue.Queue(maxsize=_PIPE_DEPTH)
        self._error: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, args=(store, name), name="rqp-leaves-writer", daemon=True)
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while True:
            item = self._q.get()
            if item is _END or item is _ABORT:
                self._stopped = True
                if item is _ABORT:
                    raise _Aborted
                return
            yield item  # type: ignore[misc]  # only bytes and the two markers are queued

    def _run(self, store: BlobStore, name: str) -> None:
        try:
            store.put_stream(name, self._chunks())
        except BaseException as exc:  # noqa: BLE001 - handed to the feeder, which raises it
            if not isinstance(exc, _Aborted):
                self._error = exc
            while not self._stopped:  # let the feeder's puts through until it ends or aborts
                item = self._q.get()
                self._stopped = item is _END or item is _ABORT

    def _put(self, item: object) -> None:
        """Queue ``item``: a piece (refused with the writer's error once it has one) or a marker
        (always queued while the writer lives: it drains until one comes, and then ends)."""
        marker = item is _END or item is _ABORT
        while True:
            if self._error is not None and not marker:
                raise self._error
            try:
                self._q.put(item, timeout=_PIPE_POLL)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    if marker:
                        return
                    raise self._error or StorageError(
                        "the leaf hashes' writer stopped; run the consolidation again"
                    ) from None

    def send(self, piece: bytes) -> None:
        if piece:
            self._put(piece)

    def close(self) -> None:
        """End the blob and wait for it to be stored; the writer's error, if any."""
        self._put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop the writer without completing the blob (the caller deletes what is staged)."""
        if self._thread.is_alive():
            self._put(_ABORT)
            self._thread.join()


class RootWhileWriting:
    """The results root built in the **same pass** that writes the results object: the leaves from
    the result lines as consolidation hands them to the encryption, instead of from the staged
    object read back, decrypted and split again.

    Why the root still commits to exactly the bytes that are swapped in. The read-back proved it
    by decrypting the stored object and comparing the digest of what it read with the digest the
    writer took. Here the rows are made from the very plaintext that is encrypted (``lines``
    passes each block to the writer after taking its rows; the lines are split exactly as the
    read-back split the decrypted stream, ``rest`` carried across blocks), and ``finish`` reads the
    staged object back and compares its SHA-256 with the one the writer took of the ciphertext on
    its way out (``consolidate.write_results``): equal digests mean the stored bytes are that
    ciphertext, whose plaintext made the leaves -- the same guarantee, without the decryption,
    split and parse of the second pass. A blob changed between write and swap is refused with
    the read-back's own message. ``inputs.bin`` is written first and read back as the leaves are
    made, its two tallies compared, as ``build_root`` does. A row no record takes is refused.

    Use: ``lines(blocks)`` as the stream ``write_results`` encrypts, then ``finish``; ``abort``
    on any failure (the staged blobs are the caller's to delete). Memory: one block and
    ``_PIPE_DEPTH`` pieces of leaf hashes."""

    def __init__(
        self,
        store: BlobStore,
        workload: Workload,
        records: Iterable[bytes],
        failures: list[Failure],
        total: int,
        *,
        inputs: Iterable[bytes] | None = None,
        unread: int = 0,
        staged: bool | str = True,
    ) -> None:
        self._store, self._workload = store, workload
        suffix = staged_suffix(staged)
        self._inputs_name = blob_name(workload.id, INPUTS_BLOB) + suffix
        self._wrote, self._read_inputs = _Tally(), _Tally()
        digests = _inputs(workload, records, total, unread) if inputs is None else _exactly(inputs, total)
        store.put_stream(self._inputs_name, self._wrote.feed(digests))
        self._macs = iter_hashes(self._read_inputs.feed(store.iter_chunks(self._inputs_name)))
        self.tree = TreeBuilder()
        self.keys = KeysSeen(workload.manifest.id_field is not None)
        if unread:
            self.keys.unkeyed_failure()
        self._maker = _LeafMaker(self._macs, failures, total, self.tree, self.keys)
        self._leaves = _Pipe(store, blob_name(workload.id, LEAVES_BLOB) + suffix)
        self._rest = b""

    def lines(self, blocks: Iterable[bytes]) -> Iterator[bytes]:
        """``blocks`` as they are, each one's rows made into leaves before it is handed on."""
        send, feed = self._leaves.send, self._maker.feed
        for block in blocks:
            lines = (self._rest + block).split(b"\n") if self._rest else block.split(b"\n")
            self._rest = lines.pop()
            send(feed(_rows_of(lines)))
            yield block
        if self._rest:
            send(feed(_rows_of([self._rest])))
            self._rest = b""

    def finish(self, results_blob: str, results_sha256: str, round_: int, signer: SigningKey | None) -> Attestation:
        """The leaves of the records after the last result, ``leaves.bin`` completed, every check
        of ``build_root``'s read-back made, and the statement over the root (signed when ``signer``)."""
        wid = self._workload.id
        self._leaves.send(self._maker.finish())
        self._leaves.close()
        for _ in self._macs:  # read inputs.bin to its end: its tally must be the bytes written
            pass
        if not self._wrote.same(self._read_inputs):
            raise IntegrityError(
                f"workload {wid}: {self._inputs_name} changed between its write and its read for the results root "
                "(another writer in the blob store); nothing was signed: check who can write to the blob store"
            )
        if self._maker.unmatched:
            raise IntegrityError(
                f"workload {wid}: {self._maker.unmatched} line(s) of the results object name no record in order "
                "(a processor's result bytes were not one JSON value on one line); nothing was signed: "
                "run the workload again"
            )
        stored = _Tally()
        for _ in stored.feed(self._store.iter_chunks(results_blob)):
            pass
        if not hmac.compare_digest(stored.sha.hexdigest(), results_sha256):
            raise IntegrityError(
                f"workload {wid}: {results_blob} is not the results object consolidation wrote (another writer "
                "in the blob store); nothing was signed: check who can write to the blob store"
            )
        return _attest(self._workload, round_, self.tree, self.keys, signer)

    def abort(self) -> None:
        """Stop the leaves' writer (after any failure, before the staged blobs are deleted)."""
        self._leaves.abort()


class EndedRound:
    """The ended round's leaves and input digests, held against its signed root: each result a
    retry round carries forward must be the one that root vouches for. The summary that names
    the root is sealed under the data key, which processors hold; the root is signed by a key
    they do not, so a results object (and summary) rewritten between rounds is refused here
    before anything of it is signed again (seventh review, E1).

    Every leaf is accounted for: a record the carried results skip must be one the ended round
    failed (its leaf the ``failed`` leaf of the reason in ``failures``, the ended summary's list)
    or never ran (``not-run``) -- the records a retry round may run again. A record the signed root
    says had a result is either carried and checked, or refused: a processor holding the data key
    and Redis could otherwise claim it "re-run" in the retry round with a result of its own, and
    drop its carried line (eighth review, F0).

    ``check(rid, line)`` for each carried result line, in increasing ``rid``; ``finish()`` once
    all are checked (``leaves.bin`` must have read back as it folded)."""

    def __init__(
        self,
        store: BlobStore,
        workload: Workload,
        root: Any,
        public_pem: str,
        round_: int,
        failures: Iterable[Failure] = (),
    ) -> None:
        if root is None:
            raise IntegrityError(
                f"workload {workload.id}: the ended round's summary names no results root (re-sealed behind rqp's "
                "back, or written before roots existed): nothing was signed; check the ended round with "
                f"'rqp verify {workload.id}' and put back that round's blobs from a backup, or re-pack the workload"
            )
        att = Attestation.from_dict(root, workload.id)
        if att.public_pem.strip() != public_pem.strip():
            raise IntegrityError(
                f"workload {workload.id}: the ended round's results root is not signed by this scheduler's results "
                "key (replaced behind rqp's back, or the key was changed since): nothing was signed; check it with "
                f"'rqp verify {workload.id}' before 'rqp retry'"
            )
        att.check(workload, None, workload.id, round_)
        self.workload, self.size, self.root = workload, att.size, att.root
        leaves_name, inputs_name = blob_name(workload.id, LEAVES_BLOB), blob_name(workload.id, INPUTS_BLOB)
        self._folded, self._read = _Tally(), _Tally()
        tree = TreeBuilder()
        for h in iter_hashes(self._folded.feed(store.iter_chunks(leaves_name))):
            tree.add(h)
        if tree.size != att.size or tree.root() != att.root:
            raise IntegrityError(
                f"workload {workload.id}: {leaves_name} does not fold into the ended round's signed root "
                "(changed behind rqp's back): nothing was signed; put back that round's blobs from a backup"
            )
        self._leaves = iter_hashes(self._read.feed(store.iter_chunks(leaves_name)))
        self._inputs = iter_hashes(store.iter_chunks(inputs_name))
        self._at = -1
        self._domain = LEAF_PREFIX + LEAF_DOMAIN
        self._failed = {f.id: f for f in failures}

    def _refuse(self, what: str) -> IntegrityError:
        return IntegrityError(
            f"workload {self.workload.id}: {what} is not what the ended round's signed root vouches for (changed "
            "behind rqp's back): nothing was signed; check the stored results with 'rqp verify "
            f"{self.workload.id}' and put back that round's results from a backup"
        )

    def _next(self) -> tuple[bytes, bytes]:
        self._at += 1
        return next(self._leaves, b""), next(self._inputs, b"")

    def _hash(self, rid: int, key: Any, mac: bytes, kind: str, digest: str) -> bytes:
        inp = b"" if mac == _NO_INPUT else mac.hex().encode()
        k = b"null" if key is None else json.dumps(str(key)).encode()
        return hashlib.sha256(
            b'%b[%d,%b,"%b","%b","%b"]' % (self._domain, rid, k, inp, kind.encode(), digest.encode())
        ).digest()

    def _without_result(self, rid: int, leaf: bytes, mac: bytes) -> None:
        """Record ``rid`` is not among the carried results: its leaf must say it failed (with the
        reason the ended summary gives) or never ran."""
        f = self._failed.get(rid)
        key, (kind, digest) = (f.key, failed_leaf(f.error)) if f is not None else (None, not_run_leaf())
        if not leaf or not mac or not hmac.compare_digest(self._hash(rid, key, mac, kind, digest), leaf):
            raise IntegrityError(
                f"workload {self.workload.id}: record {rid} is missing from the earlier round's results, but the "
                "ended round's signed root does not say it failed or never ran (its result dropped, or claimed "
                "again by this retry round, or its failure reason in summary.enc or its input digest in "
                "inputs.bin changed, behind rqp's back): nothing was signed; check the stored results "
                f"with 'rqp verify {self.workload.id}' and put back that round's blobs from a backup"
            )

    def check(self, rid: int, line: bytes) -> None:
        if not self._at < rid < self.size:
            raise self._refuse(f"the earlier round's result for record {rid}")
        leaf = mac = b""
        while self._at < rid:
            leaf, mac = self._next()
            if self._at < rid:
                self._without_result(self._at, leaf, mac)
        row = _row(line.rstrip(b"\n"))
        if row[0] != rid or not leaf or not mac:
            raise self._refuse(f"the earlier round's result for record {rid}")
        _, key, kind, digest = row
        if not hmac.compare_digest(self._hash(rid, key, mac, kind, digest), leaf):
            raise self._refuse(f"the earlier round's result for record {rid}")

    def claimed_again(self, rid: int) -> IntegrityError:
        """The refusal of a carried result (checked: the signed root vouches for it) whose record a
        chunk of this retry round claims too -- a retry round re-runs failed records only."""
        return IntegrityError(
            f"workload {self.workload.id}: record {rid} has a result the ended round's signed root vouches for, "
            "and a chunk of this retry round claims it again (a retry round runs only the failed records; "
            "Redis's state was changed behind rqp's back): nothing was signed; find who can write to this Redis"
        )

    def finish(self) -> None:
        while self._at < self.size - 1:  # the records after the last carried one
            leaf, mac = self._next()
            self._without_result(self._at, leaf, mac)
        for _ in self._leaves:  # read to the end: the second read must be the bytes that folded
            pass
        if not self._folded.same(self._read):
            raise self._refuse(blob_name(self.workload.id, LEAVES_BLOB))
