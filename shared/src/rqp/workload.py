"""A workload in the blob store: what ``rqp pack`` writes and every role reads.

Blobs under ``workloads/<id>/``:

* ``data.enc``, ``script.enc`` -- encrypted streams (AAD binds workload id and role of the blob)
* ``key.json``                  -- the data key wrapped under the KEK
* ``manifest.json``             -- sizes and SHA-256 of both ciphertexts, format, KEK id; MACed
                                   with the data key and signed by the submitter (the signature
                                   also covers the wrapped key), written last (its presence =
                                   complete)
* ``parts/<chunk>.<job>``       -- per-chunk encrypted results, written by processors
* ``results.enc``, ``summary.enc`` -- written by the scheduler when the workload ends
* ``superseded/``               -- the previous *generation* of a workload re-packed after it
                                   ended (``rqp pack --replace``): its ``manifest.json``,
                                   ``key.json``, ``summary.enc`` and ``results.enc``, readable
                                   (``rqp results``) until the new generation finishes; with
                                   ``--shred-previous`` only its manifest and key, plus a
                                   ``shred`` marker (see ``supersede``)
"""

from __future__ import annotations

import ast
import csv
import functools
import hashlib
import json
import os
import re
import secrets
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import jsonsafe
from .crypto import (
    DEFAULT_SEGMENT_SIZE,
    NONCE_SIZE,
    Sealer,
    aad,
    decrypt_stream,
    encrypt_stream,
    mac,
    new_data_key,
    scope_key,
    verify_mac,
)
from .errors import BlobNotFoundError, IntegrityError, RqpError, ScriptError, WorkloadError
from .keys import KeyProvider, WrappedKey
from .ledger import PAIR
from .records import FORMATS
from .signing import SIGNATURE_DOMAIN, Signature, SigningKey, TrustStore
from .storage import BlobStore

T = TypeVar("T")

__all__ = [
    "SHRED_BYTES",
    "SHRED_MARKER",
    "SUPERSEDED",
    "BlobInfo",
    "CsvLook",
    "Manifest",
    "NotAManifestError",
    "Seals",
    "Workload",
    "blob_name",
    "check_script_source",
    "check_workload_id",
    "looks_like_csv",
    "new_workload_id",
    "pack",
    "supersede",
    "unreadable_manifest",
    "verify_signature",
]

MANIFEST_FORMAT = "rqp-workload/1"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
READ_CHUNK = 4 << 20


#: where the previous generation of a re-packed workload is kept (``supersede``)
SUPERSEDED = "superseded/"
#: the blobs of an ended generation that stay readable, results first and manifest last (its
#: presence under ``superseded/`` = the generation is complete there); the leaf hashes and input
#: digests of its results root (``rqp.results_root``) with them, so ``rqp verify`` still checks it
_KEPT = ("results.enc", "leaves.bin", "inputs.bin", "summary.enc", "key.json", "manifest.json")
#: what ``--shred-previous`` keeps: only what the scheduler needs to check the new generation
_KEPT_SHRED = ("key.json", "manifest.json")
#: under ``superseded/``: the scheduler shreds the kept key once the new generation has started
SHRED_MARKER = "shred"
#: minimum size of what overwrites a shredded wrapped key (as ``rqp delete --shred``)
SHRED_BYTES = 512


#: scoped keys kept derived per opened workload (one per chunk or job in hand)
_SCOPES_CACHED = 64


def check_workload_id(workload_id: str) -> str:
    if not isinstance(workload_id, str) or not _ID_RE.match(workload_id):
        raise WorkloadError(
            f"invalid workload id {workload_id!r}: use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
        )
    return workload_id


def new_workload_id(stem: str = "w") -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")[:30] or "w"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def blob_name(workload_id: str, leaf: str) -> str:
    return f"workloads/{workload_id}/{leaf}"


def _in_background(fn: Callable[[], T]) -> Callable[[], T]:
    """Start ``fn`` on a thread of its own now; the returned callable waits for it and gives
    its result or raises its exception, in the caller's thread. A thread per call (not a pool):
    once per opening, and nothing to re-make in a forked child."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except Exception as exc:  # noqa: BLE001 - handed to the caller, who raises it
            future.set_exception(exc)

    threading.Thread(target=run, name="rqp-open", daemon=True).start()
    return future.result


def _reads(store: BlobStore, names: list[str]) -> list[Callable[[], bytes]]:
    """One reader per name, each giving the blob's bytes or raising as ``store.get`` does. On a
    remote store (``BlobStore.remote``) every name after the first is read at once on a thread,
    while the caller reads the first: their round trips overlap. Elsewhere each is read when
    its reader is called, in the caller's order, as a plain ``get``."""
    if not store.remote:
        return [functools.partial(store.get, name) for name in names]
    return [functools.partial(store.get, names[0])] + [
        _in_background(functools.partial(store.get, n)) for n in names[1:]
    ]


@dataclass(frozen=True)
class BlobInfo:
    name: str
    size: int
    sha256: str
    plain_size: int


class NotAManifestError(IntegrityError):
    """A workload's ``manifest.json`` that is not a manifest at all (junk a blob-store writer put
    there, not a signed manifest edited): readers of many workloads mark that one unreadable."""


@dataclass(frozen=True)
class Manifest:
    workload: str
    created: float
    kek_id: str
    format: str
    data: BlobInfo
    script: BlobInfo
    delimiter: str = ","
    segment_size: int = DEFAULT_SEGMENT_SIZE
    mac: str = ""
    #: the submitter's signature (``rqp.signing.Signature.to_dict``) over ``signing_message``
    signature: dict[str, str] | None = None
    #: the field of each record that holds the data's own id (``rqp pack --id-field``), carried
    #: through statuses, results, failures and status messages; None: ids are record numbers
    id_field: str | None = None
    #: when the submitter's signature stops being good for running it (unix time; ``rqp pack
    #: --expires``): the roles refuse to start or run it after, its results stay readable
    expires: float | None = None
    #: the generation this one replaced (``rqp pack --replace``, ``supersede``): its manifest's
    #: content digest and the SHA-256 of the summary.enc kept under ``superseded/`` (which names
    #: the round it ended at) -- signed here, so ``rqp results`` shows only that generation at that
    #: round while this one runs, never another a blob-store writer puts there; None: none replaced
    supersedes: dict[str, str] | None = None

    def _doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("mac")
        doc.pop("signature")
        for optional in ("id_field", "expires", "supersedes"):
            if doc[optional] is None:
                del doc[optional]  # as manifests without one were signed
        doc["manifest_format"] = MANIFEST_FORMAT
        return doc

    def _body(self) -> bytes:
        return json.dumps(self._doc(), sort_keys=True, separators=(",", ":")).encode()

    def signed(self, key: bytes) -> Manifest:
        """With a fresh MAC under the data key (integrity; the signature says who)."""
        return Manifest(**{**self.__dict__, "mac": mac(key, aad("manifest", self.workload) + self._body())})

    def signing_message(self, wrapped: WrappedKey) -> bytes:
        """What the submitter signs: the workload id, everything in the manifest (format, data
        and script digests and sizes, creation time, KEK id) and the wrapped data key."""
        doc = {
            "manifest": self._doc(),
            "wrapped_key": {
                "kek_id": wrapped.kek_id,
                "algorithm": wrapped.algorithm,
                "sha256": hashlib.sha256(wrapped.wrapped).hexdigest(),
            },
        }
        return SIGNATURE_DOMAIN + json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def with_signature(self, signer: SigningKey, wrapped: WrappedKey) -> Manifest:
        return Manifest(**{**self.__dict__, "signature": signer.signature(self.signing_message(wrapped)).to_dict()})

    def content_digest(self) -> str:
        """SHA-256 of what the workload *is* -- id, creation time, format, data and script -- but
        not of how its key is wrapped, so a KEK rotation keeps it. Pinned at the first start."""
        doc = self._doc()
        doc.pop("kek_id")
        return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def verify(self, key: bytes) -> None:
        verify_mac(
            key, aad("manifest", self.workload) + self._body(), self.mac, f"manifest of workload {self.workload}"
        )

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc["manifest_format"] = MANIFEST_FORMAT
        return json.dumps(doc, sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes, workload_id: str, blob: str = "manifest.json") -> Manifest:
        """The manifest in ``raw`` -- exactly a manifest, or one ``IntegrityError`` line naming the
        blob and the fix. A blob-store writer can put anything there (``null``, ``5``, a 5000-deep
        ``[[...]]``, a ``created`` of ``1e999``), and every reader lists many workloads: one
        workload's junk must be that workload's one-line refusal, never a traceback that hides the
        others. Read with rqp's strict JSON reader (size and nesting bounded before parsing).
        ``blob``: its name under the workload's folder, as the refusal names it (a superseded
        generation's is ``superseded/manifest.json``, not the current one)."""
        try:
            doc = _manifest_doc(raw)
            m = cls(**doc)
        except (ValueError, TypeError, KeyError) as exc:
            reason = f"no field {exc}" if isinstance(exc, KeyError) else " ".join(str(exc).split())[:200]
            raise NotAManifestError(
                f"{blob} of workload {workload_id} is not a manifest ({reason}); restore that blob, or "
                f"re-pack the workload (rqp pack --replace)"
            ) from None
        if m.workload != workload_id:
            raise IntegrityError(
                f"manifest under workload {workload_id} names workload {m.workload}: blobs were moved; re-pack"
            )
        return m


def unreadable_manifest(store: BlobStore, workload_id: str) -> str | None:
    """Why workload ``workload_id``'s ``manifest.json`` is not a manifest (``NotAManifestError``'s
    one line), or None -- also when it is missing or cannot be read, which other lines say. What a
    reader of many workloads (``rqp list``, ``rqp status``, the console) shows for that one."""
    try:
        Manifest.from_json(store.get(blob_name(workload_id, "manifest.json")), workload_id)
    except NotAManifestError as exc:
        return str(exc)
    except (RqpError, OSError):
        return None
    return None


_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "true or false", type(None): "null"}


#: a manifest is well under a kilobyte or two (digests, sizes, a signature); more is not one
MAX_MANIFEST_BYTES = 64 * 1024
#: nesting of a manifest: the object, its blob entries and signature (and room to spare)
MAX_MANIFEST_DEPTH = 8
#: times a manifest may carry (``created``, ``expires``): unix seconds up to the year 9999
MAX_MANIFEST_TIME = 253_402_300_799.0
#: what a manifest records of the generation it replaced (``Manifest.supersedes``)
SUPERSEDES_FIELDS = ("manifest", "summary_sha256")
_MANIFEST_TEXT = ("workload", "kek_id", "format", "delimiter", "mac")
_BLOB_FIELDS = {"name": str, "size": int, "sha256": str, "plain_size": int}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _time(doc: dict[str, Any], name: str) -> None:
    value = doc[name]
    if not (_is_int(value) or isinstance(value, float)) or not 0 <= value <= MAX_MANIFEST_TIME:
        raise ValueError(f"{name} is {json.dumps(value)[:40]}, not a unix time")
    doc[name] = float(value)


def _blob_info(doc: dict[str, Any], name: str) -> BlobInfo:
    entry = doc[name]
    if not isinstance(entry, dict) or set(entry) != set(_BLOB_FIELDS):
        raise ValueError(f"{name} is not a blob entry ({', '.join(_BLOB_FIELDS)})")
    for field, kind in _BLOB_FIELDS.items():
        value = entry[field]
        good = _is_int(value) and value >= 0 if kind is int else isinstance(value, str)
        if not good:
            raise ValueError(f"{name}.{field} is {json.dumps(value)[:40]}")
    return BlobInfo(**entry)


def _manifest_doc(raw: bytes) -> dict[str, Any]:
    """``Manifest``'s fields from a manifest blob, every type and range checked (``ValueError``,
    ``TypeError`` or ``KeyError`` with the reason otherwise)."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ValueError(f"{len(raw):,} bytes, more than a manifest's {MAX_MANIFEST_BYTES:,}")
    doc = jsonsafe.loads(raw, MAX_MANIFEST_DEPTH)
    if not isinstance(doc, dict):
        raise ValueError(f"JSON {_JSON_KINDS.get(type(doc), 'a number')}, not an object")
    if doc.pop("manifest_format", None) != MANIFEST_FORMAT:
        raise ValueError(f"manifest_format is not {MANIFEST_FORMAT}")
    for name in _MANIFEST_TEXT:
        if name in doc and not isinstance(doc[name], str):
            raise ValueError(f"{name} is not a string")
    _time(doc, "created")
    if doc.get("expires") is not None:
        _time(doc, "expires")
    segment = doc.get("segment_size", DEFAULT_SEGMENT_SIZE)
    if not _is_int(segment) or segment <= 0:
        raise ValueError("segment_size is not a positive integer")
    if doc.get("id_field") is not None and not isinstance(doc["id_field"], str):
        raise ValueError("id_field is not a string")
    signature = doc.get("signature")
    if signature is not None and not (
        isinstance(signature, dict) and all(isinstance(v, str) for v in signature.values())
    ):
        raise ValueError("signature is not an object of strings")
    supersedes = doc.get("supersedes")
    if supersedes is not None and not (
        isinstance(supersedes, dict)
        and set(supersedes) == set(SUPERSEDES_FIELDS)
        and all(isinstance(v, str) for v in supersedes.values())
    ):
        raise ValueError(f"supersedes is not an object of {', '.join(SUPERSEDES_FIELDS)} (text)")
    doc["data"] = _blob_info(doc, "data")
    doc["script"] = _blob_info(doc, "script")
    return doc


class _Tee:
    """Counts and hashes what flows through, for manifest digests without a second pass."""

    def __init__(self, chunks: Iterable[bytes], on_bytes: Callable[[int], None] | None = None) -> None:
        self.chunks = chunks
        self.size = 0
        self.sha = hashlib.sha256()
        self.on_bytes = on_bytes

    def __iter__(self) -> Iterator[bytes]:
        for c in self.chunks:
            self.size += len(c)
            self.sha.update(c)
            if self.on_bytes:
                self.on_bytes(len(c))
            yield c


def _read_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[bytes]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - opened here to turn its error into one line; the with below closes it
    except OSError as exc:
        raise WorkloadError(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        while piece := fh.read(READ_CHUNK):
            if on_bytes:
                on_bytes(len(piece))
            yield piece


def _top_level_names(tree: ast.Module) -> tuple[set[str], bool]:
    """The names a module binds at its top level (also inside top-level if/try/with blocks), and
    whether it star-imports (then any name may be bound: nothing can be said)."""
    names: set[str] = set()
    star = False
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                star = star or alias.name == "*"
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.If, ast.Try, ast.TryStar, ast.With, ast.AsyncWith, ast.For, ast.While)):
            for field in ("body", "orelse", "finalbody"):
                todo.extend(getattr(node, field, []))
            for handler in getattr(node, "handlers", []):
                todo.extend(handler.body)
    return names, star


def check_script_source(source: bytes, name: str, fmt: str) -> None:
    """What can be known of a script without running it, checked before anything is uploaded:
    it parses, and it defines ``process(record)`` -- and ``parse(stream)`` for ``--format script``
    (the contract ``rqp.sandbox`` enforces when it loads the script). ``ScriptError`` otherwise."""
    try:
        compile(source, name, "exec", dont_inherit=True)  # every syntax error, the compiler's own too
        tree = ast.parse(source, name)
    except SyntaxError as exc:
        raise ScriptError(f"{name} has a syntax error at line {exc.lineno}: {exc.msg}; fix it before packing") from None
    except ValueError as exc:  # e.g. a NUL byte
        raise ScriptError(f"{name} is not Python source ({exc}); fix it before packing") from None
    names, star = _top_level_names(tree)
    if star:
        return
    if "process" not in names:
        raise ScriptError(
            f"{name} defines no process(record) function at its top level; add one (see the README's script contract)"
        )
    if fmt == "script" and "parse" not in names:
        raise ScriptError(
            f"{name} defines no parse(stream) function, which --format script needs; add one, or pack with "
            "--format jsonl or csv"
        )


def supersede(store: BlobStore, workload_id: str, *, shred: bool = False) -> dict[str, str] | None:
    """Before ``rqp pack --replace`` writes a new generation of a workload whose current one has
    *ended* (its ``summary.enc`` exists): keep that generation under ``superseded/`` -- its
    manifest, wrapped key, summary and results, streamed -- and delete the rest of it (data,
    script, result parts, leftovers of a KEK rotation or a retry). What it kept when it did
    (``Manifest.supersedes``: the kept manifest's content digest and the SHA-256 of the summary
    bytes it copied, which the new manifest signs); None (nothing touched) for a workload never
    packed or not ended, which is overwritten as before and which the scheduler's start pin then
    refuses while the old one runs.

    The scheduler starts the new generation only if the superseded one is the one Redis pinned and
    its sealed head is closed (``rqp_scheduler.run.workload_run``); ``rqp results`` reads it while
    the new one runs, and the finisher deletes it once the new summary is written.

    ``shred`` (``rqp pack --shred-previous``): its results and summary are deleted at once, and
    only its manifest and wrapped key are kept, with a ``shred`` marker: the packer holds no KEK
    and cannot check anything, so the scheduler -- which needs that key to tell the new generation
    from a replay -- overwrites the key with random bytes as soon as the new generation has
    started (as ``rqp delete --shred``), and no copy of the old ciphertexts opens after that."""
    if not store.exists(blob_name(workload_id, "summary.enc")):
        return None
    old = blob_name(workload_id, SUPERSEDED)
    for name in list(store.list(old)):  # an earlier superseded generation, or a stale marker
        store.delete(name)
    kept = dict.fromkeys(SUPERSEDES_FIELDS, "")
    for leaf in _KEPT_SHRED if shred else _KEPT:
        source = blob_name(workload_id, leaf)
        if store.exists(source):
            copied = _Tee(store.iter_chunks(source))
            store.put_stream(old + leaf, copied)
            if leaf == "summary.enc":
                kept["summary_sha256"] = copied.sha.hexdigest()
    try:
        kept["manifest"] = Manifest.from_json(
            store.get(old + "manifest.json"), workload_id, SUPERSEDED + "manifest.json"
        ).content_digest()
    except (RqpError, OSError):
        pass  # not a manifest: that generation never opens, so nothing of it is shown either way
    if shred:
        store.put(old + SHRED_MARKER, b"shred the wrapped key once the new generation has started\n")
    # the summary first: a pack that crashes part-way and is run again finds no summary, keeps
    # the complete copy under superseded/ and overwrites what is left here
    summary = blob_name(workload_id, "summary.enc")
    current = [n for n in store.list(blob_name(workload_id, "")) if not n.startswith(old)]
    current.sort(key=lambda n: n != summary)
    for name in current:
        if shred and name.endswith(("key.json", "key.previous.json")):
            store.put(name, os.urandom(max(SHRED_BYTES, store.size(name))))
        store.delete(name)
    return kept


#: how much of a data file ``looks_like_csv`` reads: a header line and the first record's
CSV_SNIFF_BYTES = 64 * 1024
#: delimiters ``looks_like_csv`` tries after the one given (the flag that would read the file)
CSV_DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class CsvLook:
    """What ``looks_like_csv`` saw: the header line, and the flags that read the file as CSV
    beyond ``--format csv`` (a delimiter other than the default)."""

    header: str
    flag: str


def looks_like_csv(data: Path, delimiter: str = ",") -> CsvLook | None:
    """A data file to be packed as JSON Lines whose first line is not JSON but a CSV header: two
    or more fields split by a delimiter, and the next line with as many. Packing it as JSON Lines
    would fail every record, and only after the run; ``rqp pack`` holds the plaintext and can say so
    at once. None when the first line is JSON, or does not look like CSV (a file that cannot be
    read here is left to ``pack``'s own error)."""
    try:
        with open(data, "rb") as f:
            head = f.read(CSV_SNIFF_BYTES)
    except OSError:
        return None
    lines = [ln for ln in head.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines() if ln.strip()]
    if not lines:
        return None
    try:
        json.loads(lines[0])
        return None
    except ValueError:
        pass
    for sep in dict.fromkeys((delimiter, *CSV_DELIMITERS)):
        rows = list(csv.reader(lines[:2], delimiter=sep))
        width = len(rows[0])
        if width >= 2 and all(field.strip() for field in rows[0]) and all(len(row) == width for row in rows):
            flag = "" if sep == "," else f" --delimiter {_shell_word(sep)}"
            return CsvLook(lines[0], flag)
    return None


def _shell_word(sep: str) -> str:
    """A delimiter as a shell passes it to ``--delimiter`` (a tab cannot be typed as such)."""
    return "\"$(printf '\\t')\"" if sep == "\t" else f"'{sep}'"


def pack(
    store: BlobStore,
    keys: KeyProvider,
    workload_id: str,
    data: Path | Iterable[bytes],
    script: Path | bytes,
    *,
    fmt: str = "jsonl",
    delimiter: str = ",",
    replace: bool = False,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    progress: Callable[[int], None] | None = None,
    signer: SigningKey,
    id_field: str | None = None,
    expires: float | None = None,
    shred_previous: bool = False,
) -> Manifest:
    """Encrypt ``data`` and ``script`` under a fresh data key, upload them (streaming), and sign
    the manifest and the wrapped key with the submitter's ``signer``. With ``replace``, an ended
    generation of the same id is kept readable first (``supersede``; ``shred_previous``: shredded).

    ``data`` is a file, or its bytes as an iterable of pieces (``rqp.Client.submit`` streams
    records it encodes that way: never all in memory, never in plaintext on disk); ``script`` a
    file or its source."""
    check_workload_id(workload_id)
    if fmt not in FORMATS:
        raise WorkloadError(f"unknown data format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not replace and store.exists(blob_name(workload_id, "manifest.json")):
        raise WorkloadError(
            f"workload {workload_id} already exists in {store.location}; choose another --id or pass --replace"
        )
    if isinstance(script, bytes):
        script_bytes, script_name = script, "the script"
    else:
        script_bytes, script_name = b"".join(_read_file(Path(script))), str(script)
    check_script_source(script_bytes, script_name, fmt)
    replaced = supersede(store, workload_id, shred=shred_previous) if replace else None
    key = new_data_key()
    try:
        infos = {}
        data_source = _read_file(Path(data), progress) if isinstance(data, (str, os.PathLike)) else data
        for role, source in (("data", data_source), ("script", [script_bytes])):
            plain = _Tee(source)
            ct = _Tee(encrypt_stream(key, plain, aad(role, workload_id), segment_size))
            name = blob_name(workload_id, f"{role}.enc")
            store.put_stream(name, ct)
            infos[role] = BlobInfo(name, ct.size, ct.sha.hexdigest(), plain.size)
        wrapped = keys.wrap(key)
        store.put(blob_name(workload_id, "key.json"), wrapped.to_json())
        manifest = (
            Manifest(
                workload=workload_id,
                created=time.time(),
                kek_id=keys.kek_id,
                format=fmt,
                data=infos["data"],
                script=infos["script"],
                delimiter=delimiter,
                segment_size=segment_size,
                id_field=id_field or None,
                expires=expires,
                supersedes=replaced,
            )
            .signed(key)
            .with_signature(signer, wrapped)
        )
        store.put(blob_name(workload_id, "manifest.json"), manifest.to_json())
        return manifest
    finally:
        del key


def verify_signature(manifest: Manifest, wrapped: WrappedKey, trust: TrustStore) -> str:
    """The fingerprint of the trusted submitter who signed exactly this manifest and wrapped key;
    ``IntegrityError`` (naming the signer) for an unsigned, untrusted or altered workload."""
    signature = Signature.from_dict(manifest.signature, manifest.workload) if manifest.signature is not None else None
    return trust.verify(manifest.workload, manifest.signing_message(wrapped), signature).fingerprint


class Workload:
    """An opened workload: signature and manifest verified, data key unwrapped (memory only)."""

    def __init__(
        self, store: BlobStore, manifest: Manifest, key: bytes, signer: str = "", generation: str = ""
    ) -> None:
        self.store = store
        self.manifest = manifest
        self.id = manifest.workload
        self.key = key
        self.signer = signer
        #: "" for the current generation, ``SUPERSEDED`` for the previous one of a re-packed
        #: workload (its manifest, key, summary and results live there; nothing else does)
        self.generation = generation
        #: values sealed under the data key itself (specs, notes, statuses, messages, the pin)
        self.seals = Seals(key, self.id)
        self._scopes: OrderedDict[str, Seals] = OrderedDict()
        #: (round, closed) of its sealed head in Redis, read when asked (``rqp.backends`` sets it):
        #: readers refuse a summary of an older round (``rqp.summary.check_round``)
        self.sealed_round: Callable[[], tuple[int, bool] | None] | None = None

    def blob(self, leaf: str) -> str:
        """The name of this generation's blob ``leaf`` (``summary.enc``, ``results.enc``...)."""
        return blob_name(self.id, self.generation + leaf)

    @classmethod
    def open(
        cls, store: BlobStore, keys: KeyProvider, workload_id: str, trust: TrustStore, generation: str = ""
    ) -> Workload:
        """Read, check the submitter's signature *before* unwrapping anything, unwrap, verify.
        ``generation=SUPERSEDED``: the previous generation of a re-packed workload, under the same
        checks (``WorkloadError`` when there is none)."""
        check_workload_id(workload_id)
        if generation not in ("", SUPERSEDED):
            raise WorkloadError(
                f"unknown generation {generation!r} of workload {workload_id}; use '' or {SUPERSEDED!r}"
            )
        what = f"workload {workload_id}" if not generation else f"the superseded generation of workload {workload_id}"
        # the wrapped key is read while the manifest is (nothing in it is used before the
        # manifest is parsed and its signature checked, as before); errors keep their order
        read_manifest, read_key = _reads(
            store,
            [blob_name(workload_id, generation + "manifest.json"), blob_name(workload_id, generation + "key.json")],
        )
        try:
            raw = read_manifest()
        except BlobNotFoundError:
            if generation:
                raise WorkloadError(f"{what} is not in {store.location}: it was not re-packed after it ended") from None
            raise WorkloadError(
                f"workload {workload_id} not found in {store.location}; pack it with 'rqp pack' or check RQP_BLOB_URL"
            ) from None
        manifest = Manifest.from_json(raw, workload_id, generation + "manifest.json")
        try:
            wrapped = WrappedKey.from_json(read_key())
        except BlobNotFoundError:
            raise IntegrityError(f"key.json of {what} is missing from {store.location}; re-pack the workload") from None
        signer = verify_signature(manifest, wrapped, trust)
        key = keys.unwrap(wrapped)
        manifest.verify(key)
        return cls(store, manifest, key, signer, generation)

    def check_runnable(self, now: float) -> None:
        """Refuse to start or run a workload whose signature has expired (``rqp pack --expires``)."""
        expires = self.manifest.expires
        if expires is not None and now > expires:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expires))
            raise IntegrityError(
                f"the signature of workload {self.id} expired at {when}; re-pack it (rqp pack --replace) to run it again"
            )

    # the pin: what the workload was at its first start, sealed under its own data key ------
    def seal_pin(self) -> bytes:
        return self.seal("pin", "", self.manifest.content_digest().encode())

    def check_pin(self, sealed: bytes | None) -> None:
        """``IntegrityError`` unless ``sealed`` is this workload's pin: a workload replaced while
        unfinished (re-packed, or an older signed version put back) is refused, not run."""
        if sealed is None:
            raise IntegrityError(
                f"workload {self.id} has no start pin in Redis: no scheduler started it (or the pin was deleted), so it "
                f"cannot be told apart from a replaced workload; schedule it with rqp-scheduler, or run it under a new id"
            )
        try:
            pinned = self.open_sealed("pin", "", sealed).decode()
        except IntegrityError:
            pinned = ""
        if pinned != self.manifest.content_digest():
            raise IntegrityError(
                f"workload {self.id} was replaced while unfinished: this version (signed by {self.signer or 'unknown'}) is not "
                f"the one pinned at its first start; let that one finish, and submit the new one under a new id"
            )

    def _check_blob(self, info: BlobInfo, what: str) -> None:
        try:
            size = self.store.size(info.name)
        except BlobNotFoundError:
            raise IntegrityError(
                f"{what} of workload {self.id} is missing from {self.store.location}; re-pack the workload"
            ) from None
        if size != info.size:
            raise IntegrityError(
                f"{what} of workload {self.id} is {size} bytes but the manifest says {info.size}: truncated or replaced; re-pack the workload"
            )

    def _read_sized(self, info: BlobInfo, what: str) -> bytes:
        """The blob ``info`` names, of exactly the manifest's size, in one request: a read of
        at most that many bytes (and one more range when the blob is longer, so memory stays
        bounded by the manifest's size), instead of asking the size first. A missing, shorter or
        longer blob raises ``_check_blob``'s error, naming its size (a second request, on that
        failure only)."""
        try:
            pieces = self.store.iter_chunks(info.name, max(1, info.size))
        except BlobNotFoundError:
            self._check_blob(info, what)
            raise  # it appeared after all: the reader's own error
        try:
            raw = next(pieces, b"")
            longer = next(pieces, None) is not None
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        if longer or len(raw) != info.size:
            self._check_blob(info, what)
            raise IntegrityError(
                f"{what} of workload {self.id} changed while being read; read it again, or re-pack the workload"
            )
        return raw

    def script_source(self) -> bytes:
        info = self.manifest.script
        raw = self._read_sized(info, "script")
        if hashlib.sha256(raw).hexdigest() != info.sha256:
            raise IntegrityError(
                f"script of workload {self.id} does not match its manifest digest: tampered with; re-pack the workload"
            )
        return b"".join(decrypt_stream(self.key, [raw], aad("script", self.id), f"script of workload {self.id}"))

    def data_chunks(self) -> Iterator[bytes]:
        """Decrypted data, streamed segment by segment; every segment is authenticated before it
        is yielded, and the whole ciphertext is checked against the manifest digest at the end."""
        info = self.manifest.data
        if not self.store.remote:
            self._check_blob(info, "data")
            chunks = self.store.iter_chunks(info.name)
        else:  # the size is asked while the first range is read: one round trip, not two
            check = _in_background(functools.partial(self._check_blob, info, "data"))
            try:
                chunks = self.store.iter_chunks(info.name)
            except RqpError:
                check()  # a missing blob: the size check's error, as on a local store
                raise
            check()
        tee = _Tee(chunks)
        yield from decrypt_stream(self.key, tee, aad("data", self.id), f"data of workload {self.id}")
        if tee.sha.hexdigest() != info.sha256 or tee.size != info.size:
            raise IntegrityError(
                f"data of workload {self.id} does not match its manifest digest: tampered with; re-pack the workload"
            )

    # sealed small values bound to this workload -------------------------------------------
    def seal(self, purpose: str, item: Any, plaintext: bytes) -> bytes:
        return self.seals.seal(purpose, item, plaintext)

    def seal_packed(self, purpose: str, pairs: Iterable[tuple[int, bytes]], header: struct.Struct = PAIR) -> bytes:
        return self.seals.seal_packed(purpose, pairs, header)

    def open_sealed(self, purpose: str, item: Any, sealed: bytes) -> bytes:
        return self.seals.open_sealed(purpose, item, sealed)

    def scope(self, name: str) -> Seals:
        """Seals under the key of scope ``name`` (``rqp.crypto.scope_key``): a data chunk's
        records under its chunk's key, a job's results under its job's key -- so a result part
        of an earlier attempt does not open as the committed one's."""
        seals = self._scopes.get(name)
        if seals is None:
            seals = self._scopes[name] = Seals(scope_key(self.key, self.id, name), self.id, name)
            while len(self._scopes) > _SCOPES_CACHED:
                self._scopes.popitem(last=False)
        else:
            self._scopes.move_to_end(name)
        return seals


class Seals:
    """Sealing of small values under one key with AAD ``purpose|W|item`` (``rqp.crypto.aad``)."""

    __slots__ = ("_aad", "id", "scope", "sealer")

    def __init__(self, key: bytes, workload_id: str, scope: str = "") -> None:
        self.sealer = Sealer(key)
        self.id = workload_id
        self.scope = scope
        self._aad: dict[str, bytes] = {}

    def _prefix(self, purpose: str) -> bytes:
        """The AAD of ``purpose`` for this workload, up to the item (computed once)."""
        prefix = self._aad.get(purpose)
        if prefix is None:
            prefix = self._aad[purpose] = aad(purpose, self.id, "")
        return prefix

    def _ad(self, purpose: str, item: Any) -> bytes:
        return self._prefix(purpose) + str(item).encode()

    def seal(self, purpose: str, item: Any, plaintext: bytes) -> bytes:
        return self.sealer.seal(plaintext, self._ad(purpose, item))

    def seal_packed(self, purpose: str, pairs: Iterable[tuple[int, bytes]], header: struct.Struct = PAIR) -> bytes:
        """Seal many (id, plaintext) values at once, straight into the scripts' packed form
        (see ``rqp.ledger.pack_values``); byte-for-byte what ``seal`` gives each value, but with one
        nonce draw for the lot and no per-value Python call -- the scheduler's enqueue and the
        processors' statuses and results go through here. ``header`` packs (id, length) before
        each sealed value: ``PAIR`` for the Redis scripts, the part entry for result parts."""
        pairs = list(pairs)
        prefix = self._prefix(purpose)
        encrypt = self.sealer.aead.encrypt
        pack = header.pack
        nonces = os.urandom(NONCE_SIZE * len(pairs))
        out: list[bytes] = []
        add = out.append
        at = 0
        for rid, plaintext in pairs:
            nonce = nonces[at : at + NONCE_SIZE]
            at += NONCE_SIZE
            ct = encrypt(nonce, plaintext, b"%b%d" % (prefix, rid))
            add(pack(rid, NONCE_SIZE + len(ct)))
            add(nonce)
            add(ct)
        return b"".join(out)

    def open_sealed(self, purpose: str, item: Any, sealed: bytes) -> bytes:
        return self.sealer.open(sealed, self._ad(purpose, item), f"{purpose} {item} of workload {self.id}")
