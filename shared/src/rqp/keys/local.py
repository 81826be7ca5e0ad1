"""Key-encryption keys as RSA PEM files, for running with no cloud at all."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import KeyProviderError, WrongKeyError
from ..pem import fingerprint, write_key_pair
from ._base import WRAP_ALGORITHM, KeyProvider, WrappedKey

__all__ = ["DEFAULT_RSA_BITS", "MIN_RSA_BITS", "LocalKeyProvider", "generate_kek"]

MIN_RSA_BITS = 3072
DEFAULT_RSA_BITS = 3072
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def generate_kek(private_path: Path, public_path: Path | None = None, bits: int = DEFAULT_RSA_BITS) -> str:
    """Write a new RSA KEK: the private key with mode 0600 (created so, never widened), the public
    key beside it. Refuses to overwrite an existing key: losing a KEK loses every workload."""
    if bits < MIN_RSA_BITS:
        raise KeyProviderError(f"RSA key size {bits} is too small; use {MIN_RSA_BITS} bits or more")
    private_path = Path(private_path)
    public_path = Path(public_path) if public_path else private_path.with_suffix(".pub.pem")
    return write_key_pair(
        private_path, public_path, lambda: rsa.generate_private_key(public_exponent=65537, key_size=bits)
    )


class LocalKeyProvider(KeyProvider):
    """An RSA KEK from PEM files. Only the public key is needed to pack; only processors and the
    scheduler, which unwrap, need the private key (mounted read-only into their containers)."""

    def __init__(self, private_key_file: Path | None = None, public_key_file: Path | None = None) -> None:
        self._private: rsa.RSAPrivateKey | None = None
        if private_key_file is not None:
            self._private = self._load_private(Path(private_key_file))
            self._public = self._private.public_key()
        elif public_key_file is not None:
            self._public = self._load_public(Path(public_key_file))
        else:
            raise KeyProviderError(
                "no key-encryption key configured; set RQP_KEK_FILE (private PEM) or RQP_KEK_PUBLIC_FILE; create one with 'rqp keygen'"
            )
        if self._public.key_size < MIN_RSA_BITS:
            raise KeyProviderError(
                f"the key-encryption key is RSA-{self._public.key_size}; rqp requires RSA-{MIN_RSA_BITS} or larger: create one with 'rqp keygen'"
            )
        self.kek_id = fingerprint(self._public)

    @staticmethod
    def _read(path: Path, what: str) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise KeyProviderError(
                f"{what} {path} does not exist; create one with 'rqp keygen' or fix the path"
            ) from None
        except PermissionError:
            raise KeyProviderError(f"{what} {path} is not readable by this user; fix its owner or mode") from None

    def _load_private(self, path: Path) -> rsa.RSAPrivateKey:
        """The KEK from the operator's own file. OpenSSL's full RSA key check (primality of the
        factors) took 0.11 s of every role process's start -- 2.75 µs per record of a 40,000-record
        run in the scheduler -- so it is replaced by a round trip through the key: a wrapped
        random value must unwrap to itself, which a damaged or mismatched file fails."""
        raw = self._read(path, "private key file")
        try:
            key = serialization.load_pem_private_key(raw, password=None, unsafe_skip_rsa_key_validation=True)
        except (ValueError, TypeError):
            raise KeyProviderError(
                f"private key file {path} is not an unencrypted PEM private key; create one with 'rqp keygen'"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyProviderError(f"private key file {path} is not an RSA key; create one with 'rqp keygen'")
        probe = os.urandom(32)
        try:
            ok = key.decrypt(key.public_key().encrypt(probe, _OAEP), _OAEP) == probe
        except ValueError:
            ok = False
        if not ok:
            raise KeyProviderError(
                f"private key file {path} is not a working RSA key (a value wrapped under it does not unwrap): the "
                "file is damaged; restore it from its backup"
            )
        return key

    def _load_public(self, path: Path) -> rsa.RSAPublicKey:
        raw = self._read(path, "public key file")
        try:
            key = serialization.load_pem_public_key(raw)
        except ValueError:
            raise KeyProviderError(
                f"public key file {path} is not a PEM public key; use the .pub.pem written by 'rqp keygen'"
            ) from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise KeyProviderError(f"public key file {path} is not an RSA key")
        return key

    def wrap(self, data_key: bytes) -> WrappedKey:
        return WrappedKey(self.kek_id, WRAP_ALGORITHM, self._public.encrypt(data_key, _OAEP))

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        if self._private is None:
            raise KeyProviderError(
                "only a public key is configured; unwrapping needs the private key: set RQP_KEK_FILE"
            )
        if wrapped.algorithm != WRAP_ALGORITHM:
            raise WrongKeyError(f"data key is wrapped with {wrapped.algorithm}; rqp expects {WRAP_ALGORITHM}")
        if wrapped.kek_id != self.kek_id:
            raise WrongKeyError(
                f"wrong key: the workload's data key is wrapped under KEK {wrapped.kek_id}, "
                f"but the configured KEK is {self.kek_id}; point RQP_KEK_FILE at the key it was packed with"
            )
        try:
            return self._private.decrypt(wrapped.wrapped, _OAEP)
        except ValueError:
            raise WrongKeyError(
                f"the wrapped data key does not decrypt under KEK {self.kek_id}: wrong key or a tampered key blob"
            ) from None
