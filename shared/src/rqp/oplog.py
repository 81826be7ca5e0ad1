"""Operators' requests, signed: what lets pause, resume, cancel, retry, priority and delete take
effect, and the tamper-evident audit log they form.

Anyone holding the Redis password can write any field. Before signed control, the scheduler
obeyed ``meta.control`` and the audit log was plain JSON, so such a writer could cancel a
workload short or put words in an operator's mouth. Now every action is a ``ControlRequest``
signed by a trusted operator key (``RQP_TRUSTED_OPERATORS_FILE``) or by the submitter key that
signed that workload, and the roles act only on requests that verify:

* a request names its workload, its action and argument, who asked (the person), when, a
  128-bit nonce, and ``prev``: the digest of the audit log's newest entry when it was made. The
  signature covers all of it under its own domain prefix, so a workload signature can never pass
  for a request or the other way round;
* it goes, in one script (``post_control.lua``), to the workload's request list
  ``rqp:w:W:control`` (what the scheduler folds into the workload's *verified* control state) and
  to the global chain ``rqp:audit`` (newest first; its head digest in ``rqp:audit:head``);
* ``ControlReader`` folds a workload's list: each entry must verify, name this workload, carry a
  nonce not seen before on it, and be dated between the workload's creation (signed in its
  manifest) and a little after now. Anything else is refused and recorded in ``rqp:rejected``;
  it changes nothing. A captured request therefore cannot be replayed onto another workload, onto
  a later workload packed under the same id, or twice onto the same one;
* ``verify_audit`` checks every entry's signature and every ``prev`` link: an altered or forged
  entry is marked, a removed one shows as a cut between the two entries around it.

What deleting keys can do: removing ``rqp:w:W:control`` can drop a request the scheduler has
not read yet (the operator's action does not happen; the audit chain still shows it was asked
for), and a restarted scheduler then folds what is left. It can never make rqp do something no
trusted key signed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from .errors import IntegrityError, WorkloadError
from .ledger import AUDIT, AUDIT_HEAD, Priority, WorkloadKeys, record_rejection, text
from .ledger._scripts import Scripts
from .signing import Signature, SigningKey, TrustedSigner, TrustStore, signature_verifies

__all__ = [
    "ACTIONS",
    "AUDIT_KEEP",
    "CLOCK_SKEW",
    "GENESIS",
    "REQUEST_DOMAIN",
    "AuditEntry",
    "ControlReader",
    "ControlRequest",
    "ControlState",
    "ControlVerifier",
    "SignedRequest",
    "post",
    "read_audit",
    "sign_request",
]

#: prefixed to every signed request: a signature over anything else never verifies as one
REQUEST_DOMAIN = b"rqp-control-request/1\n"
#: what each action may carry as its argument
ACTIONS: dict[str, tuple[str, ...]] = {
    "pause": ("",),
    "resume": ("",),
    "cancel": ("",),
    "retry": (),  # the round it starts, as a decimal number
    "priority": tuple(p.value for p in Priority),
    "delete": ("", "shred"),
}
#: the ``prev`` of the first entry of the chain
GENESIS = "0" * 64
#: how far a request's time may lie ahead of the verifier's clock (clocks of VMs differ a little)
CLOCK_SKEW = 300.0
#: entries kept in the audit chain (older ones are trimmed; ``verify_audit`` says so)
AUDIT_KEEP = 10_000
#: how many times ``post`` retries when another request took the chain head first
POST_ATTEMPTS = 20


@dataclass(frozen=True)
class ControlRequest:
    workload: str
    action: str
    arg: str
    actor: str
    at: float
    nonce: str
    prev: str = GENESIS
    #: the content digest of the workload version it is for (``Manifest.content_digest``): a request
    #: for an earlier workload packed under the same id never applies to a later one
    manifest: str = ""

    def canonical(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    def check_shape(self) -> None:
        if self.action not in ACTIONS:
            raise IntegrityError(f"control request has unknown action {self.action!r}")
        allowed = ACTIONS[self.action]
        if self.action == "retry":
            if not self.arg.isdigit():
                raise IntegrityError("control request 'retry' does not name the round it starts")
        elif self.arg not in allowed:
            raise IntegrityError(f"control request {self.action!r} has argument {self.arg!r}")
        if len(self.nonce) != 32 or any(c not in "0123456789abcdef" for c in self.nonce):
            raise IntegrityError("control request has a malformed nonce")


@dataclass(frozen=True)
class SignedRequest:
    req: ControlRequest
    signature: Signature
    #: the exact bytes stored in Redis (what ``digest`` hashes and the chain links)
    raw: bytes = b""

    def encode(self) -> bytes:
        return json.dumps(
            {"v": 1, "req": asdict(self.req), "sig": self.signature.to_dict()}, sort_keys=True, separators=(",", ":")
        ).encode()

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.raw or self.encode()).hexdigest()

    @classmethod
    def decode(cls, raw: bytes | str) -> SignedRequest:
        data = raw.encode() if isinstance(raw, str) else bytes(raw)
        try:
            doc = json.loads(data)
            if doc.get("v") != 1:
                raise ValueError("version")
            r = doc["req"]
            req = ControlRequest(
                workload=_str(r["workload"]),
                action=_str(r["action"]),
                arg=_str(r["arg"]),
                actor=_str(r["actor"]),
                at=float(r["at"]),
                nonce=_str(r["nonce"]),
                prev=_str(r["prev"]),
                manifest=_str(r.get("manifest", "")),
            )
            sig = Signature(_str(doc["sig"]["alg"]), _str(doc["sig"]["signer"]), base64.b64decode(doc["sig"]["value"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise IntegrityError(
                "not a signed control request (unsigned, malformed or from before signed control)"
            ) from None
        return cls(req, sig, data)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def sign_request(
    signer: SigningKey,
    workload: str,
    action: str,
    arg: str,
    actor: str,
    *,
    prev: str = GENESIS,
    at: float | None = None,
    manifest: str = "",
) -> SignedRequest:
    req = ControlRequest(
        workload, action, arg, actor, time.time() if at is None else at, secrets.token_hex(16), prev, manifest
    )
    req.check_shape()
    signed = SignedRequest(req, signer.signature(REQUEST_DOMAIN + req.canonical()))
    return SignedRequest(signed.req, signed.signature, signed.encode())


def post(
    r: redis.Redis,
    signer: SigningKey,
    workload: str,
    action: str,
    arg: str,
    actor: str,
    *,
    advisory: str = "",
    require_known: bool = True,
    submit: bool = False,
    manifest: str = "",
) -> tuple[bool, str, SignedRequest | None]:
    """Sign and append a request to the workload's list and to the audit chain, atomically.

    ``advisory``: the state change to show at once ('pause' | 'resume' | 'cancel'), refused when
    the shown state does not allow it (returns ``(False, shown state, None)``); nothing acts on
    the shown state. ``require_known``: refuse a workload Redis does not know (``(False, "",
    None)``), so a typo'd id writes nothing. ``submit``: hand the workload to a serving scheduler
    when none supervises it. Returns ``(True, new shown state, the request)``."""
    scripts = Scripts(r)
    keys = WorkloadKeys(workload)
    head = r.get(AUDIT_HEAD)
    for _ in range(POST_ATTEMPTS):
        expected, prev = _link(head)
        signed = sign_request(signer, workload, action, arg, actor, prev=prev, manifest=manifest)
        status, info = scripts.post_control(
            keys=[keys.meta, keys.control, AUDIT, AUDIT_HEAD, keys.lock, "rqp:submissions"],
            args=[signed.raw, expected, signed.digest, AUDIT_KEEP, workload, advisory, int(require_known), int(submit)],
        )
        status = int(status)
        if status == 1:
            return True, str(text(info) or ""), signed
        if status == 0:  # another request took the head: sign again on the new one
            head = info
            continue
        return False, str(text(info) or ""), None
    raise WorkloadError(f"could not append to the audit log of Redis (busy); try 'rqp {action} {workload}' again")


def _link(head: bytes | str | None) -> tuple[bytes, str]:
    """(the head as Redis holds it, for the script's compare; the ``prev`` a request signs). A head
    that is not a digest -- written behind rqp's back -- is linked by its own hash, so the next
    request still lands and ``read_audit`` shows the cut."""
    if head is None:
        return GENESIS.encode(), GENESIS
    data = head.encode() if isinstance(head, str) else bytes(head)
    try:
        digest = data.decode()
    except UnicodeDecodeError:
        digest = ""
    if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
        return data, digest
    return data, hashlib.sha256(data).hexdigest()


class ControlVerifier:
    """Whose requests count for one workload: the trusted operators, and its own submitter."""

    def __init__(self, operators: TrustStore | None, submitters: TrustStore | None = None, submitter: str = "") -> None:
        self.operators = operators
        self.submitters = submitters
        self.submitter = submitter

    def signer_of(self, entry: SignedRequest, workload: str) -> TrustedSigner:
        """The trusted signer of ``entry`` for ``workload``; ``IntegrityError`` with why not."""
        entry.req.check_shape()
        if entry.req.workload != workload:
            raise IntegrityError(f"control request for workload {entry.req.workload!r} found on workload {workload}")
        fp = entry.signature.signer
        key: TrustedSigner | None = None
        if self.operators is not None:
            key = self.operators.signers.get(fp)
        if key is None and self.submitters is not None and fp == self.submitter:
            key = self.submitters.signers.get(fp)
        if key is None:
            raise IntegrityError(
                f"control request '{entry.req.action}' on {workload} is signed by {fp}, which is neither a trusted "
                "operator (RQP_TRUSTED_OPERATORS_FILE) nor the workload's submitter"
            )
        if not signature_verifies(key.key, entry.signature, REQUEST_DOMAIN + entry.req.canonical()):
            raise IntegrityError(
                f"control request '{entry.req.action}' on {workload} differs from what {fp} signed: altered"
            )
        return key


@dataclass
class ControlState:
    """A workload's control as its verified requests say: what the scheduler acts on."""

    paused: bool = False
    cancelling: bool = False
    priority: Priority | None = None
    #: the rounds a verified ``retry`` request asked for
    retry_rounds: set[int] = field(default_factory=set)
    deleted: bool = False
    #: who asked for the latest change, for logs
    last: ControlRequest | None = None

    def apply(self, req: ControlRequest) -> None:
        if req.action == "pause" and not self.cancelling:
            self.paused = True
        elif req.action == "resume" and not self.cancelling:
            self.paused = False
        elif req.action == "cancel":
            self.cancelling = True
        elif req.action == "priority":
            self.priority = Priority(req.arg)
        elif req.action == "retry":
            # a retry of a cancelled workload runs its failed records: the cancel before it is spent
            self.retry_rounds.add(int(req.arg))
            self.cancelling = self.paused = False
        elif req.action == "delete":
            self.deleted = True
        self.last = req


class ControlReader:
    """Folds one workload's request list into its ``ControlState``, refusing what does not verify.

    ``created``: the workload's creation time from its signed manifest -- a request dated before
    it was made for an earlier workload of the same id. Reads only what is new since the last call
    (one LRANGE); a list that shrank (entries deleted) is read again from the start, with every
    nonce already applied refused as a replay."""

    def __init__(
        self, r: redis.Redis, workload: str, verifier: ControlVerifier, created: float, who: str, manifest: str = ""
    ) -> None:
        self.r = r
        #: the content digest of the version being run: a request bound to another is refused
        self.manifest = manifest
        self.workload = workload
        self.key = WorkloadKeys(workload).control
        self.verifier = verifier
        self.created = created
        self.who = who
        self.state = ControlState()
        #: every request accepted so far (the state is their fold in signing order)
        self.applied: list[ControlRequest] = []
        self.seen: set[str] = set()
        self.cursor = 0
        self._digests: list[str] = []

    def poll(self, now: float | None = None) -> list[ControlRequest]:
        """The requests accepted since the last poll, applied to ``state``."""
        now = time.time() if now is None else now
        raw = self.r.lrange(self.key, self.cursor, -1)
        if self.cursor and not raw and self.r.llen(self.key) < self.cursor:
            self.cursor, self._digests = 0, []
            raw = self.r.lrange(self.key, 0, -1)
        accepted: list[ControlRequest] = []
        for value in raw:
            self.cursor += 1
            accepted.extend(self._take(value, now))
        if accepted:
            # folded in the order they were signed, not the list's: a Redis writer who reorders
            # the list (resume before pause) cannot change what they add up to
            self.applied.extend(accepted)
            self.state = ControlState()
            for req in sorted(self.applied, key=lambda q: (q.at, q.nonce)):
                self.state.apply(req)
        return accepted

    def _take(self, value: bytes | str, now: float) -> Iterable[ControlRequest]:
        try:
            entry = SignedRequest.decode(value)
            self.verifier.signer_of(entry, self.workload)
            req = entry.req
            if req.nonce in self.seen:
                raise IntegrityError(
                    f"control request '{req.action}' on {self.workload} was replayed (nonce seen before)"
                )
            if req.manifest and self.manifest and req.manifest != self.manifest:
                raise IntegrityError(
                    f"control request '{req.action}' on {self.workload} was made for another version of it "
                    "(an earlier workload packed under the same id)"
                )
            # a request bound to no version must be younger than this one, with no allowance for
            # clock skew: a captured one from before a re-pack never applies
            if req.at < self.created - (CLOCK_SKEW if req.manifest else 0.0):
                raise IntegrityError(
                    f"control request '{req.action}' on {self.workload} is older than the workload (made for an earlier one)"
                )
            if req.at > now + CLOCK_SKEW:
                raise IntegrityError(f"control request '{req.action}' on {self.workload} is dated in the future")
        except IntegrityError as exc:
            reason = str(exc) if self.workload in str(exc) else f"{exc} (on workload {self.workload})"
            record_rejection(
                self.r, job=f"control:{self.workload}", workload=self.workload, worker=self.who, reason=reason
            )
            return ()
        self.seen.add(req.nonce)
        return (req,)


@dataclass(frozen=True)
class AuditEntry:
    """One audit-log entry as ``rqp audit`` shows it, with what could be verified of it."""

    at: float
    who: str
    what: str
    workload: str
    signer: str
    verified: bool
    note: str
    #: where the chain breaks just below this entry (entries removed), or ""
    cut: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _describe(req: ControlRequest) -> str:
    if req.action == "priority":
        return f"priority {req.arg}"
    if req.action == "delete" and req.arg == "shred":
        return "delete --shred"
    if req.action == "retry":
        return "retry"
    return req.action


def read_audit(
    r: redis.Redis, operators: TrustStore | None, submitters: TrustStore | None = None, limit: int = AUDIT_KEEP
) -> list[AuditEntry]:
    """The audit chain, newest first, each entry checked: its signature by a trusted operator (or a
    trusted submitter), and its link to the entry below it. An entry that cannot be verified is
    returned with ``verified=False`` and why; a removed entry shows as ``cut`` on the entry above."""
    raws = [x.encode() if isinstance(x, str) else bytes(x) for x in r.lrange(AUDIT, 0, limit - 1)]
    head = text(r.get(AUDIT_HEAD))
    if not raws and head is not None and head != GENESIS:
        # the head names an entry, and the log holds none: every entry was removed
        return [
            AuditEntry(
                0.0,
                "?",
                "?",
                "?",
                "",
                False,
                "the audit log is empty but its head names an entry",
                cut="every entry removed (rqp:audit:head names an entry that is gone)",
            )
        ]
    out: list[AuditEntry] = []
    parsed: list[SignedRequest | None] = []
    for raw in raws:
        try:
            parsed.append(SignedRequest.decode(raw))
        except IntegrityError:
            parsed.append(None)
    for i, (raw, entry) in enumerate(zip(raws, parsed, strict=True)):
        if entry is None:
            out.append(_unverifiable(raw))
            continue
        req = entry.req
        verified, note = False, ""
        try:
            req.check_shape()
            key = (operators.signers.get(entry.signature.signer) if operators else None) or (
                submitters.signers.get(entry.signature.signer) if submitters else None
            )
            if key is None:
                note = f"signed by {entry.signature.signer}, not a trusted operator or submitter"
            elif not signature_verifies(key.key, entry.signature, REQUEST_DOMAIN + req.canonical()):
                note = "altered after signing"
            else:
                verified, note = True, f"signed by {key.name}"
        except IntegrityError as exc:
            note = str(exc)
        cut = ""
        if i + 1 < len(raws):
            if req.prev != hashlib.sha256(raws[i + 1]).hexdigest():
                cut = "entries removed or altered below this one (its link does not match the entry under it)"
        elif req.prev != GENESIS:
            cut = (
                "older entries trimmed"
                if len(raws) >= limit or r.llen(AUDIT) >= AUDIT_KEEP
                else "older entries removed (the first entry's link points at one that is gone)"
            )
        if i == 0 and head is not None and head != hashlib.sha256(raw).hexdigest():
            cut = (cut + "; " if cut else "") + "newer entries removed (the chain head points past this one)"
        out.append(
            AuditEntry(req.at, req.actor, _describe(req), req.workload, entry.signature.signer, verified, note, cut)
        )
    return out


def _unverifiable(raw: bytes) -> AuditEntry:
    try:
        doc = json.loads(raw)
        return AuditEntry(
            float(doc.get("at", 0)),
            str(doc.get("who", "?")),
            str(doc.get("what", "?")),
            str(doc.get("workload", "?")),
            "",
            False,
            "unsigned: written without a signature (forged, or from before signed control)",
        )
    except (ValueError, TypeError, AttributeError):
        return AuditEntry(0.0, "?", "?", "?", "", False, "malformed entry")
