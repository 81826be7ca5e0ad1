"""Who may submit work: submitter signatures over workloads, and the roles' list of trusted keys.

Anyone with the public KEK can make a workload whose manifest MAC checks (the MAC key derives
from a data key the packer chose), so the MAC proves integrity, not origin. Origin is a
signature: ``rqp pack`` signs the workload id, the manifest (format, data and script digests
and sizes, creation time, KEK id) and the wrapped data key with the submitter's key -- Ed25519
in a PEM file, or an EC P-256 key in Azure Key Vault (ES256) -- and scheduler, processors and
the reading commands accept a workload only when a key in ``RQP_TRUSTED_SIGNERS_FILE`` signed
exactly that. The check runs before any key is unwrapped, any data decrypted or any script
imported.

The trusted-signers file is a list of PEM public keys (what ``rqp keygen --signing`` writes
beside the private key), each optionally preceded by ``# name`` lines; a key's id is the
SHA-256 fingerprint of its DER form, as for KEKs.
"""

from __future__ import annotations

import base64
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .errors import ConfigError, IntegrityError, KeyProviderError
from .pem import fingerprint, write_key_pair

__all__ = [
    "ED25519",
    "ES256",
    "SIGNATURE_DOMAIN",
    "LocalSigningKey",
    "Signature",
    "SigningKey",
    "TrustStore",
    "TrustedSigner",
    "fingerprint",
    "generate_signing_key",
    "revoked_fingerprints",
    "signature_verifies",
]

ED25519 = "Ed25519"
ES256 = "ES256"
#: prefixed to every signed statement, so a signature over anything else never verifies
SIGNATURE_DOMAIN = b"rqp-workload-signature/1\n"
#: a PEM public key only where it stands on lines of its own: a block inside a comment
#: (``# revoked: -----BEGIN PUBLIC KEY-----...``) or with commented body lines is never a key
_PEM_RE = re.compile(
    rb"^-----BEGIN PUBLIC KEY-----[ \t]*\r?\n(?:[A-Za-z0-9+/=]+[ \t]*\r?\n)+-----END PUBLIC KEY-----[ \t]*$", re.M
)
#: a line revoking a key by fingerprint, in a trusted-keys file or a revoked-signers file
_FINGERPRINT_RE = re.compile(rb"sha256:([0-9a-f]{32})", re.I)


def _inline_key(line: bytes) -> str | None:
    """The fingerprint of a PEM public key written on one line (``# revoked: -----BEGIN PUBLIC
    KEY----- MCow... -----END PUBLIC KEY-----``), or None when the line holds none."""
    begin, end = b"-----BEGIN PUBLIC KEY-----", b"-----END PUBLIC KEY-----"
    if begin not in line or end not in line:
        return None
    body = b"".join(line.split(begin, 1)[1].split(end, 1)[0].split())
    pem = begin + b"\n" + b"\n".join(body[i : i + 64] for i in range(0, len(body), 64)) + b"\n" + end + b"\n"
    try:
        return fingerprint(serialization.load_pem_public_key(pem))
    except ValueError:
        return None


def _revocation_lines(raw: bytes, path: object) -> set[str]:
    """Every fingerprint on a line that says "revoked" -- in any case, commented or not, with CRLF
    or a trailing remark -- fail closed: a line that says "revoked" but names no fingerprint
    is a ``ConfigError``, never a revocation silently ignored."""
    found: set[str] = set()
    for line in raw.splitlines():
        if b"revoked" not in line.lower():
            continue
        prints = _FINGERPRINT_RE.findall(line)
        inline = _inline_key(line)
        if inline is not None:
            found.add(inline)
            continue
        if not prints:
            raise ConfigError(
                f"{path}: a line says 'revoked' but names no key fingerprint (revoked: sha256:<32 hex>): "
                f"{line.decode(errors='replace').strip()[:80]!r}; fix it so the key stays revoked"
            )
        found.update("sha256:" + p.decode().lower() for p in prints)
    return found


PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def _alg_of(public_key: Any) -> str:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return ED25519
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1):
        return ES256
    raise ValueError("not an Ed25519 or EC P-256 public key")


@dataclass(frozen=True)
class Signature:
    """A submitter's signature as it is stored in the manifest."""

    alg: str
    signer: str
    value: bytes

    def to_dict(self) -> dict[str, str]:
        return {"alg": self.alg, "signer": self.signer, "value": base64.b64encode(self.value).decode()}

    @classmethod
    def from_dict(cls, doc: Any, workload_id: str) -> Signature:
        try:
            return cls(str(doc["alg"]), str(doc["signer"]), base64.b64decode(doc["value"], validate=True))
        except (KeyError, TypeError, ValueError):
            raise IntegrityError(
                f"the signature of workload {workload_id} is malformed: tampered with; re-pack the workload"
            ) from None


class SigningKey(ABC):
    """A submitter's private key; only ``sign`` touches it, so a vault key fits the same shape."""

    alg: str
    fingerprint: str

    @abstractmethod
    def sign(self, message: bytes) -> bytes:
        """The signature of ``message`` in this algorithm's standard encoding (ES256: r || s)."""

    @abstractmethod
    def public_pem(self) -> bytes:
        """The public key, PEM, for a trusted-signers file."""

    def signature(self, message: bytes) -> Signature:
        return Signature(self.alg, self.fingerprint, self.sign(message))


class LocalSigningKey(SigningKey):
    """An Ed25519 private key in a PEM file (``rqp keygen --signing``)."""

    alg = ED25519

    def __init__(self, path: Path) -> None:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise KeyProviderError(
                f"signing key file {path} does not exist; create one with 'rqp keygen --signing' or fix RQP_SIGNING_KEY_FILE"
            ) from None
        except PermissionError:
            raise KeyProviderError(
                f"signing key file {path} is not readable by this user; fix its owner or mode"
            ) from None
        try:
            key = serialization.load_pem_private_key(raw, password=None)
        except (ValueError, TypeError):
            raise KeyProviderError(
                f"signing key file {path} is not an unencrypted PEM private key; create one with 'rqp keygen --signing'"
            ) from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeyProviderError(
                f"signing key file {path} is not an Ed25519 key; create one with 'rqp keygen --signing'"
            )
        self._key = key
        self.fingerprint = fingerprint(key.public_key())

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def public_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def generate_signing_key(private_path: Path, public_path: Path | None = None) -> str:
    """Write a new Ed25519 submitter key: private 0600 (created so, never widened), public beside
    it. Refuses to overwrite: a lost key only means re-trusting a new one, but an overwritten one
    silently changes who signs."""
    private_path = Path(private_path)
    public_path = (
        Path(public_path)
        if public_path
        else private_path.with_name(private_path.name.removesuffix(".pem") + ".pub.pem")
    )
    return write_key_pair(private_path, public_path, ed25519.Ed25519PrivateKey.generate)


@dataclass(frozen=True)
class TrustedSigner:
    fingerprint: str
    name: str
    key: Any

    @property
    def alg(self) -> str:
        return _alg_of(self.key)


def revoked_fingerprints(raw: bytes) -> set[str]:
    """The fingerprints a revoked-signers file revokes: every ``sha256:...`` fingerprint in it (any
    case, any line) and every PEM public key it holds (it may simply collect the revoked keys'
    .pub.pem files)."""
    found = {"sha256:" + m.group(1).decode().lower() for m in _FINGERPRINT_RE.finditer(raw)}
    for m in _PEM_RE.finditer(raw):
        try:
            found.add(fingerprint(serialization.load_pem_public_key(m.group(0))))
        except ValueError:
            continue
    return found


class TrustStore:
    """The public keys whose workloads this role runs, less the revoked ones.

    Revocation is checked before any trust: a key revoked in the trusted file itself (a
    ``revoked: sha256:...`` line) or in ``RQP_REVOKED_SIGNERS_FILE`` is refused even while its
    PEM block is still in the trusted file."""

    def __init__(self, signers: list[TrustedSigner], source: str, revoked: set[str] | None = None) -> None:
        self.revoked = set(revoked or ())
        self.signers = {s.fingerprint: s for s in signers if s.fingerprint not in self.revoked}
        self.source = source

    @classmethod
    def from_file(cls, path: Path, revoked_file: Path | None = None) -> TrustStore:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                f"trusted signers file {path} does not exist; fix RQP_TRUSTED_SIGNERS_FILE (submitters' public keys from 'rqp keygen --signing')"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"trusted signers file {path} cannot be read ({exc.strerror}); mount it read-only or fix the path"
            ) from None
        revoked = _revocation_lines(raw, path)
        if revoked_file is not None:
            try:
                revoked |= revoked_fingerprints(Path(revoked_file).read_bytes())
            except OSError as exc:
                raise ConfigError(
                    f"revoked signers file {revoked_file} cannot be read ({exc.strerror}); fix RQP_REVOKED_SIGNERS_FILE"
                ) from None
        signers = []
        pos = 0
        for n, m in enumerate(_PEM_RE.finditer(raw), 1):
            names = [
                ln[1:].strip()
                for ln in raw[pos : m.start()].decode(errors="replace").splitlines()
                if ln.startswith("#")
            ]
            pos = m.end()
            try:
                key = serialization.load_pem_public_key(m.group(0))
                _alg_of(key)
            except ValueError:
                raise ConfigError(
                    f"key {n} in trusted signers file {path} is not an Ed25519 or EC P-256 public key; use the .pub.pem of 'rqp keygen --signing'"
                ) from None
            fp = fingerprint(key)
            signers.append(TrustedSigner(fp, names[-1] if names else fp, key))
        if not signers:
            raise ConfigError(
                f"trusted signers file {path} holds no public key; add the submitters' .pub.pem files (cat signer.pub.pem >> {path})"
            )
        return cls(signers, str(path), revoked)

    def verify(self, workload_id: str, message: bytes, signature: Signature | None) -> TrustedSigner:
        """The signer of ``message``; ``IntegrityError`` naming the signer when it is not trusted
        or did not sign exactly this."""
        if signature is None:
            raise IntegrityError(
                f"workload {workload_id} is not signed; rqp runs only workloads signed by a trusted submitter: "
                f"re-pack it with a signing key (rqp keygen --signing; RQP_SIGNING_KEY_FILE or --signing-key)"
            )
        if signature.signer in self.revoked:
            raise IntegrityError(
                f"workload {workload_id} is signed by {signature.signer}, which is revoked "
                f"(RQP_TRUSTED_SIGNERS_FILE {self.source} or RQP_REVOKED_SIGNERS_FILE); re-pack it with a trusted key"
            )
        signer = self.signers.get(signature.signer)
        if signer is None:
            raise IntegrityError(
                f"workload {workload_id} is signed by {signature.signer}, which is not a trusted signer "
                f"(RQP_TRUSTED_SIGNERS_FILE {self.source}); add the submitter's public key there, or re-pack with a trusted key"
            )
        if not _verifies(signer.key, signature, message):
            raise IntegrityError(
                f"workload {workload_id} differs from what {signature.signer} signed (its manifest, data key or id changed "
                f"after signing): tampered with; re-pack the workload"
            )
        return signer


def _verifies(key: Any, signature: Signature, message: bytes) -> bool:
    try:
        if signature.alg != _alg_of(key):
            return False
        if signature.alg == ED25519:
            key.verify(signature.value, message)
        else:
            if len(signature.value) != 64:
                return False
            r, s = int.from_bytes(signature.value[:32], "big"), int.from_bytes(signature.value[32:], "big")
            key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def signature_verifies(key: Any, signature: Signature, message: bytes) -> bool:
    """Whether ``signature`` is ``key``'s over exactly ``message`` (any statement type: the caller
    prefixes its own domain)."""
    return _verifies(key, signature, message)
