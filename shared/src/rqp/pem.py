"""Key pairs as PEM files: how rqp writes a new private key beside its public key, and the id it
gives a public key.

Both kinds of key ``rqp keygen`` makes -- the RSA key-encryption key (``rqp.keys.local``) and
the Ed25519 submitter signing key (``rqp.signing``) -- are written here, so they share one
guarantee: the private half is created with mode 0600 (never written wider and narrowed later),
and no existing file is ever overwritten.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from .errors import KeyProviderError

__all__ = ["PRIVATE_KEY_MODE", "fingerprint", "write_key_pair"]

#: a private key file is readable and writable by its owner only
PRIVATE_KEY_MODE = 0o600

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def fingerprint(public_key: Any) -> str:
    """A public key's id: ``sha256:`` and the first 32 hex digits of the hash of its DER form."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()[:32]


def write_key_pair(private_path: Path, public_path: Path, generate: Callable[[], PrivateKey]) -> str:
    """Write the key ``generate()`` makes: the private key (PKCS#8, unencrypted) to
    ``private_path`` with mode 0600, the public key (SubjectPublicKeyInfo) to ``public_path``;
    returns its fingerprint.

    Refuses, before generating anything, when either file exists: an overwritten key is a lost
    key (every workload wrapped under a KEK) or a silent change of who signs.
    """
    for p in (private_path, public_path):
        if p.exists():
            raise KeyProviderError(f"{p} already exists; move it away or choose another --out path")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    key = generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_KEY_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(private_path, PRIVATE_KEY_MODE)  # the umask may have narrowed it further; make it exact
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return fingerprint(key.public_key())
